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

/// Copies of plain data in and out of shared memory through relaxed atomic
/// words.
///
/// Memory that another process may write at any moment cannot be read with
/// a plain or volatile access: a racing write makes that a data race, which
/// is undefined behaviour whatever the hardware does. These functions move
/// the bytes through `core` atomics with `Relaxed` ordering instead (they
/// compile to the same plain moves on x86-64 and AArch64): a racing writer
/// then yields a torn value, a mix of old and new words, and never undefined
/// behaviour. The ordering that publishes the bytes comes from the caller's
/// own index or flag loads and stores (Acquire/Release) around the copy.
///
/// The typed functions move `T` in units of the widest of 8, 4, 2 or 1 bytes
/// that both divides `size_of::<T>()` and is at most `align_of::<T>()`, so a
/// copy of an integer cell uses the same access size as the atomic
/// operations on that cell (`RawValue::fetch_add` and the like): racing
/// accesses of different sizes to one location are avoided. The byte
/// functions move 8-byte words where the shared side is aligned and single
/// bytes at the ends.
// Hidden: used by the sibling crates shmproc-sync/shmproc-collections, not API
// (they copy values in and out of rings and queues).
#[doc(hidden)]
pub mod copy {
    use core::mem::MaybeUninit;

    use super::ShmSafe;
    use crate::sync::shared::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};

    macro_rules! units {
        ($load:ident, $store:ident, $t:ty, $a:ident) => {
            /// Loads `n` units from `src` (shared) into `dst` (private).
            ///
            /// # Safety
            ///
            /// `src` is aligned for the unit and valid for `n` units of
            /// reads; `dst` is valid for `n` units of writes and not shared.
            #[inline]
            #[allow(clippy::cast_ptr_alignment, reason = "the caller guarantees unit alignment")]
            unsafe fn $load(src: *const u8, dst: *mut u8, n: usize) {
                for k in 0..n {
                    // SAFETY: in bounds and aligned (caller); an atomic view
                    // of memory others may write is exactly what `from_ptr`
                    // is for, and all accesses to shared bytes are atomic.
                    let v = unsafe { $a::from_ptr(src.add(k * size_of::<$t>()).cast::<$t>().cast_mut()) }.load(Relaxed);
                    // SAFETY: `dst` is private and valid for the write (caller).
                    unsafe { dst.add(k * size_of::<$t>()).cast::<$t>().write_unaligned(v) };
                }
            }

            /// Stores `n` units from `src` (private) to `dst` (shared).
            ///
            /// # Safety
            ///
            /// `dst` is aligned for the unit and valid for `n` units of
            /// writes; `src` is valid for `n` units of reads and not shared.
            #[inline]
            #[allow(clippy::cast_ptr_alignment, reason = "the caller guarantees unit alignment")]
            unsafe fn $store(dst: *mut u8, src: *const u8, n: usize) {
                for k in 0..n {
                    // SAFETY: `src` is private and valid for the read (caller).
                    let v = unsafe { src.add(k * size_of::<$t>()).cast::<$t>().read_unaligned() };
                    // SAFETY: in bounds and aligned (caller); atomic access.
                    unsafe { $a::from_ptr(dst.add(k * size_of::<$t>()).cast::<$t>()) }.store(v, Relaxed);
                }
            }
        };
    }

    units!(load8, store8, u8, AtomicU8);
    units!(load16, store16, u16, AtomicU16);
    units!(load32, store32, u32, AtomicU32);
    units!(load64, store64, u64, AtomicU64);

    /// The access unit for `T`: the widest of 8, 4, 2, 1 that divides its
    /// size and is at most its alignment.
    const fn unit<T>() -> usize {
        let (size, align) = (size_of::<T>(), align_of::<T>());
        if align >= 8 && size % 8 == 0 {
            8
        } else if align >= 4 && size % 4 == 0 {
            4
        } else if align >= 2 && size % 2 == 0 {
            2
        } else {
            1
        }
    }

    /// Moves `count` values of `T` from `src` to `dst` in `T`'s unit; the
    /// shared side is given by the caller's choice of `src`/`dst`.
    ///
    /// # Safety
    ///
    /// Both sides valid for `count` `T`s and aligned for `T`.
    #[inline]
    unsafe fn load_units<T>(src: *const u8, dst: *mut u8, count: usize) {
        let bytes = count * size_of::<T>();
        match unit::<T>() {
            // Each arm: forwarded from the caller; `unit::<T>()`
            // divides the size and is at most the alignment, so every unit
            // is aligned.
            // SAFETY: as said above.
            8 => unsafe { load64(src, dst, bytes / 8) },
            // SAFETY: as said above.
            4 => unsafe { load32(src, dst, bytes / 4) },
            // SAFETY: as said above.
            2 => unsafe { load16(src, dst, bytes / 2) },
            // SAFETY: as said above.
            _ => unsafe { load8(src, dst, bytes) },
        }
    }

    /// As [`load_units`], storing to shared memory.
    ///
    /// # Safety
    ///
    /// As [`load_units`].
    #[inline]
    unsafe fn store_units<T>(dst: *mut u8, src: *const u8, count: usize) {
        let bytes = count * size_of::<T>();
        match unit::<T>() {
            // Each arm: forwarded from the caller; `unit::<T>()`
            // divides the size and is at most the alignment, so every unit
            // is aligned.
            // SAFETY: as said above.
            8 => unsafe { store64(dst, src, bytes / 8) },
            // SAFETY: as said above.
            4 => unsafe { store32(dst, src, bytes / 4) },
            // SAFETY: as said above.
            2 => unsafe { store16(dst, src, bytes / 2) },
            // SAFETY: as said above.
            _ => unsafe { store8(dst, src, bytes) },
        }
    }

    /// Reads one `T` from shared memory.
    ///
    /// # Safety
    ///
    /// `src` is aligned for `T`, inside a live mapping, valid for reads of
    /// `size_of::<T>()` bytes, and every access others make to those bytes
    /// is atomic. The read is an atomic access, which Rust models as
    /// shared mutable memory: `src` must not be derived from a shared
    /// reference (`&T`, `slice::as_ptr`) to non-`UnsafeCell` data; a pointer
    /// from the mapping itself, or from `as_mut_ptr`, is fine.
    #[inline]
    pub unsafe fn load<T: ShmSafe>(src: *const T) -> T {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: caller's contract for `src`; `out` is private and sized.
        unsafe { load_units::<T>(src.cast(), out.as_mut_ptr().cast(), 1) };
        // SAFETY: every byte of `out` was written, and `T: FromBytes`
        // accepts every bit pattern.
        unsafe { out.assume_init() }
    }

    /// Writes one `T` to shared memory.
    ///
    /// # Safety
    ///
    /// `dst` is aligned for `T`, inside a live writable mapping, valid for
    /// `size_of::<T>()` bytes, and every access others make to those bytes
    /// is atomic.
    #[inline]
    pub unsafe fn store<T: ShmSafe>(dst: *mut T, value: T) {
        // SAFETY: caller's contract for `dst`; `value` is a private local
        // with no padding (`T: IntoBytes`).
        unsafe { store_units::<T>(dst.cast(), (&raw const value).cast(), 1) };
    }

    /// Reads `dst.len()` values of `T` from shared memory at `src`.
    ///
    /// # Safety
    ///
    /// As [`load`], for `dst.len()` consecutive values.
    #[inline]
    pub unsafe fn load_slice<T: ShmSafe>(src: *const T, dst: &mut [MaybeUninit<T>]) {
        // SAFETY: caller's contract; `dst` is private, aligned and sized.
        unsafe { load_units::<T>(src.cast(), dst.as_mut_ptr().cast(), dst.len()) };
    }

    /// Writes `src` to shared memory at `dst`.
    ///
    /// # Safety
    ///
    /// As [`store`], for `src.len()` consecutive values.
    #[inline]
    pub unsafe fn store_slice<T: ShmSafe>(dst: *mut T, src: &[T]) {
        // SAFETY: caller's contract; `src` is private, aligned and sized.
        unsafe { store_units::<T>(dst.cast(), src.as_ptr().cast(), src.len()) };
    }

    /// Copies `dst.len()` bytes out of shared memory at `src`: 8-byte words
    /// where `src` is 8-aligned, single bytes at the ends.
    ///
    /// # Safety
    ///
    /// `src` is inside a live mapping and valid for `dst.len()` bytes of
    /// reads, and every access others make to those bytes is atomic.
    #[inline]
    pub unsafe fn load_bytes(src: *const u8, dst: &mut [u8]) {
        let len = dst.len();
        let head = (src.addr().wrapping_neg() & 7).min(len);
        let words = (len - head) / 8;
        let d = dst.as_mut_ptr();
        let tail = len - head - words * 8;
        // SAFETY: the three pieces partition `0..len`, the middle
        // one starts 8-aligned in `src`, and `dst` is private.
        unsafe { load8(src, d, head) };
        // SAFETY: as said above.
        unsafe { load64(src.wrapping_add(head), d.wrapping_add(head), words) };
        // SAFETY: as said above.
        unsafe { load8(src.wrapping_add(len - tail), d.wrapping_add(len - tail), tail) };
    }

    /// Copies `src` into shared memory at `dst`, in the units of
    /// [`load_bytes`].
    ///
    /// # Safety
    ///
    /// `dst` is inside a live writable mapping and valid for `src.len()`
    /// bytes, and every access others make to those bytes is atomic.
    #[inline]
    pub unsafe fn store_bytes(dst: *mut u8, src: &[u8]) {
        let len = src.len();
        let head = (dst.addr().wrapping_neg() & 7).min(len);
        let words = (len - head) / 8;
        let s = src.as_ptr();
        let tail = len - head - words * 8;
        // SAFETY: the three pieces as in `load_bytes`, with the roles swapped.
        unsafe { store8(dst, s, head) };
        // SAFETY: as said above.
        unsafe { store64(dst.wrapping_add(head), s.wrapping_add(head), words) };
        // SAFETY: as said above.
        unsafe { store8(dst.wrapping_add(len - tail), s.wrapping_add(len - tail), tail) };
    }

    #[cfg(test)]
    #[allow(
        clippy::multiple_unsafe_ops_per_block,
        clippy::cast_possible_truncation,
        reason = "test code"
    )]
    mod tests {
        use super::*;

        // Each case uses a fresh cell: atomic accesses of different sizes to
        // the same bytes are what the unit rule avoids (and Miri's weak
        // memory model refuses them even from one thread).
        #[test]
        fn typed_round_trip_in_each_unit() {
            // SAFETY: each `cell` is a fresh local, aligned and large enough
            // for its T.
            unsafe {
                let mut cell = [0u64; 4];
                store(cell.as_mut_ptr().cast::<[u16; 3]>(), [1, 2, 3]);
                assert_eq!(load(cell.as_mut_ptr().cast::<[u16; 3]>()), [1, 2, 3]);
                let mut cell = [0u64; 4];
                store(cell.as_mut_ptr().cast::<u32>(), 0xdead_beef);
                assert_eq!(load(cell.as_mut_ptr().cast::<u32>()), 0xdead_beef);
                let mut cell = [0u64; 4];
                store(cell.as_mut_ptr().cast::<[u64; 3]>(), [7, 8, 9]);
                assert_eq!(load(cell.as_mut_ptr().cast::<[u64; 3]>()), [7, 8, 9]);
                let mut cell = [0u64; 4];
                store(cell.as_mut_ptr().cast::<[u8; 5]>(), *b"hello");
                assert_eq!(load(cell.as_mut_ptr().cast::<[u8; 5]>()), *b"hello");
            }
            assert_eq!(super::unit::<[u8; 8]>(), 1);
            assert_eq!(super::unit::<u64>(), 8);
            assert_eq!(super::unit::<[u32; 3]>(), 4);
        }

        #[test]
        fn byte_copies_at_every_alignment_and_length() {
            for off in 0..8 {
                for len in 0..40 {
                    // A fresh buffer for each case, as in the test above.
                    let mut shared = [0u64; 8];
                    let base = shared.as_mut_ptr().cast::<u8>();
                    let src: Vec<u8> = (0..len).map(|i| (i * 7 + off) as u8 | 1).collect();
                    let mut back = vec![0u8; len];
                    // SAFETY: off + len <= 48 < 64 bytes of `shared`.
                    unsafe {
                        store_bytes(base.add(off), &src);
                        load_bytes(base.add(off), &mut back);
                    }
                    assert_eq!(back, src, "offset {off}, length {len}");
                }
            }
        }

        #[test]
        fn slices_round_trip() {
            let mut shared = [0u32; 16];
            let src: Vec<u32> = (0..16).collect();
            let mut back = [MaybeUninit::<u32>::uninit(); 16];
            // SAFETY: both sides are locals of 16 u32s.
            unsafe {
                store_slice(shared.as_mut_ptr(), &src);
                load_slice(shared.as_mut_ptr(), &mut back);
            }
            // SAFETY: `load_slice` wrote every element.
            let back: Vec<u32> = back.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(back, src);
        }
    }
}
