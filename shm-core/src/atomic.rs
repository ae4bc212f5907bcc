//! Plain-data types that may live in a segment, and the integer types whose
//! shared cells can be used atomically.

// Views of shared memory are `core` atomics by definition (see `crate::sync`).
#![allow(clippy::disallowed_types)]

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::sync::shared::{self, Ordering};

/// A type that can live in shared memory: plain data with no padding that
/// accepts every bit pattern (so whatever another process writes is a valid
/// value) and holds no pointer (zerocopy's `FromBytes` is not implemented for
/// references or raw pointers). Implemented for every type that derives
/// zerocopy's `FromBytes`, `IntoBytes` and `Immutable`; the compiler proves it.
pub trait ShmSafe: FromBytes + IntoBytes + Immutable + Copy + Send + Sync + 'static {}

impl<T: FromBytes + IntoBytes + Immutable + Copy + Send + Sync + 'static> ShmSafe for T {}

/// An integer whose shared cells can be used through the matching `core`
/// atomic type.
///
/// # Safety
///
/// `Atomic` must have the size and alignment of `Self` and be an atomic type
/// over the same bits (as `AtomicU64` is for `u64`).
pub unsafe trait AtomicInteger: ShmSafe {
    /// The `core` atomic type of the same size.
    type Atomic: Send + Sync;
    /// `Atomic::load`.
    fn load(a: &Self::Atomic, order: Ordering) -> Self;
    /// `Atomic::store`.
    fn store(a: &Self::Atomic, v: Self, order: Ordering);
    /// `Atomic::swap`.
    fn swap(a: &Self::Atomic, v: Self, order: Ordering) -> Self;
    /// `Atomic::fetch_add` (wrapping).
    fn fetch_add(a: &Self::Atomic, v: Self, order: Ordering) -> Self;
    /// `Atomic::fetch_sub` (wrapping).
    fn fetch_sub(a: &Self::Atomic, v: Self, order: Ordering) -> Self;
    /// `Atomic::compare_exchange`.
    fn compare_exchange(
        a: &Self::Atomic,
        current: Self,
        new: Self,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self, Self>;
}

macro_rules! atomic_integer {
    ($($t:ty => $a:ident),* $(,)?) => {$(
        const _: () = assert!(size_of::<$t>() == size_of::<shared::$a>() && align_of::<$t>() == align_of::<shared::$a>());
        // SAFETY: the assertion above checks size and alignment; `shared::$a`
        // is documented as having the same in-memory representation as `$t`.
        unsafe impl AtomicInteger for $t {
            type Atomic = shared::$a;
            #[inline]
            fn load(a: &Self::Atomic, order: Ordering) -> Self { a.load(order) }
            #[inline]
            fn store(a: &Self::Atomic, v: Self, order: Ordering) { a.store(v, order) }
            #[inline]
            fn swap(a: &Self::Atomic, v: Self, order: Ordering) -> Self { a.swap(v, order) }
            #[inline]
            fn fetch_add(a: &Self::Atomic, v: Self, order: Ordering) -> Self { a.fetch_add(v, order) }
            #[inline]
            fn fetch_sub(a: &Self::Atomic, v: Self, order: Ordering) -> Self { a.fetch_sub(v, order) }
            #[inline]
            fn compare_exchange(a: &Self::Atomic, current: Self, new: Self, success: Ordering, failure: Ordering) -> Result<Self, Self> {
                a.compare_exchange(current, new, success, failure)
            }
        }
    )*};
}

atomic_integer! {
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
}
