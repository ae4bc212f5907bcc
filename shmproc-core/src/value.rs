//! `RawValue<T>`: one plain-data value in shared memory, without a lock
//! (Python's `multiprocessing.RawValue`).

use std::fmt;

use crate::atomic::{AtomicInteger, ShmSafe, copy};
use crate::error::SegmentError;
use crate::segment::{Mapped, Segment, SegmentKind, SegmentObject, TypeIdentity};
use crate::sync::shared::Ordering;

/// One value of type `T` in its own shared segment.
///
/// Clones share the value; so does a child process that receives it as an
/// argument (under every start method). `get` and `set` copy the whole value
/// through relaxed atomic words ([`crate::atomic::copy`]) in the unit of
/// `T`'s alignment (at most 8 bytes), the same access size as the atomic
/// operations of integer values, so a racing access from another thread or
/// process is never a data race. A `T` wider than its unit (a struct, an
/// array, a `u128`) is not copied in one piece: a `get` racing a `set` may
/// return a torn mix of old and new words (still a valid `T`, as every bit
/// pattern is), and concurrent `set`s may interleave (as with Python's
/// `RawValue`). Use the atomic operations of integer values, or a lock, for
/// read-modify-write and for wide values that must not tear.
///
/// # Examples
///
/// ```
/// use shmproc_core::RawValue;
///
/// let v = RawValue::new(1.5f64)?;
/// v.set(v.get() * 2.0);
/// assert_eq!(v.get(), 3.0);
///
/// let n = RawValue::new(0u64)?;
/// n.fetch_add(5, std::sync::atomic::Ordering::Relaxed);
/// assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 5);
/// # Ok::<(), shmproc_core::SegmentError>(())
/// ```
pub struct RawValue<T> {
    map: Mapped<T>,
}

// SAFETY: the value lives in shared memory reached only through atomic
// accesses (relaxed word copies or the atomic operations); T: ShmSafe is
// Send + Sync plain data, and the segment is kept alive by the mapping.
// `&RawValue` never hands out a reference to T, only copies.
crate::segment_object!(unsafe Send + Sync, [T: ShmSafe] RawValue<T>);

impl<T: ShmSafe> SegmentObject for RawValue<T> {
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<T>(SegmentKind::VALUE)
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let (map, _) = Mapped::with_count(seg, &Self::identity(), Some(1))?;
        Ok(Self { map })
    }

    fn segment(&self) -> &Segment {
        self.map.segment()
    }
}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        Self { map: self.map.clone() }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: ShmSafe> RawValue<T> {
    /// Puts `value` in a new anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made (zero-sized `T`
    /// included).
    pub fn new(value: T) -> Result<Self, SegmentError> {
        Ok(Self::create(size_of::<T>())?.with(value))
    }

    /// Puts `value` in a new named segment that other programs can open with
    /// [`RawValue::open`].
    ///
    /// # Errors
    ///
    /// As [`Segment::create_named`].
    pub fn create_named(name: &str, value: T) -> Result<Self, SegmentError> {
        Ok(Self::create_named_in(name, size_of::<T>())?.with(value))
    }

    /// Sets the first value of a new segment.
    fn with(self, value: T) -> Self {
        self.set(value);
        self
    }

    /// Opens the named value `name`, checking that it holds a `T`.
    ///
    /// # Errors
    ///
    /// As [`Segment::open_named`], including [`SegmentError::TypeMismatch`].
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::open_named(name)
    }

    /// Wraps a segment, checking that it holds a `T`.
    ///
    /// # Errors
    ///
    /// [`SegmentError::TypeMismatch`] or [`SegmentError::BadPayload`].
    pub fn from_segment(seg: Segment) -> Result<Self, SegmentError> {
        Self::attach(seg)
    }

    /// Reads the value.
    #[inline]
    pub fn get(&self) -> T {
        // SAFETY: the pointer is in bounds and aligned (the payload is
        // 128-aligned, T's alignment is at most 128, and it holds exactly one
        // T, checked at construction) and lives as long as `self.map`. Every
        // access to the cell is atomic: this crate's copies go through
        // `copy` in T's unit, the atomic operations use T's own size, and
        // other processes run the same code. T accepts any bit pattern, so
        // a torn read is still a valid T.
        unsafe { copy::load(self.map.as_ptr().as_ptr()) }
    }

    /// Writes the value.
    #[inline]
    pub fn set(&self, value: T) {
        // SAFETY: as in `get` (bounds, alignment, lifetime, every access
        // atomic); the mapping is writable.
        unsafe { copy::store(self.map.as_ptr().as_ptr(), value) }
    }

    /// Raw pointer to the shared value. Other processes may write it at any
    /// time: access it only atomically (for example with
    /// [`crate::atomic::copy`]), never through a plain read, write or
    /// reference.
    pub fn as_ptr(&self) -> *mut T {
        self.map.as_ptr().as_ptr()
    }

    /// The segment behind this value.
    pub fn segment(&self) -> &Segment {
        self.map.segment()
    }
}

impl<T: AtomicInteger> RawValue<T> {
    /// The shared cell as a `core` atomic, for any atomic operation.
    #[inline]
    pub fn atomic(&self) -> &T::Atomic {
        // SAFETY: AtomicInteger guarantees T::Atomic has T's size and
        // alignment; the cell is in bounds and lives as long as `self.map`.
        unsafe { &*self.map.as_ptr().as_ptr().cast::<T::Atomic>() }
    }

    /// Atomic load.
    #[inline]
    pub fn load(&self, order: Ordering) -> T {
        T::load(self.atomic(), order)
    }

    /// Atomic store.
    #[inline]
    pub fn store(&self, value: T, order: Ordering) {
        T::store(self.atomic(), value, order);
    }

    /// Atomic swap; returns the previous value.
    #[inline]
    pub fn swap(&self, value: T, order: Ordering) -> T {
        T::swap(self.atomic(), value, order)
    }

    /// Atomic wrapping add; returns the previous value.
    #[inline]
    pub fn fetch_add(&self, value: T, order: Ordering) -> T {
        T::fetch_add(self.atomic(), value, order)
    }

    /// Atomic wrapping subtract; returns the previous value.
    #[inline]
    pub fn fetch_sub(&self, value: T, order: Ordering) -> T {
        T::fetch_sub(self.atomic(), value, order)
    }

    /// Atomic compare-and-exchange.
    ///
    /// # Errors
    ///
    /// `Err(actual)` when the value was not `current`.
    #[inline]
    pub fn compare_exchange(&self, current: T, new: T, success: Ordering, failure: Ordering) -> Result<T, T> {
        T::compare_exchange(self.atomic(), current, new, success, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::shared::Ordering::{Relaxed, SeqCst};

    #[test]
    fn get_set_and_atomics() {
        let v = RawValue::new(5i64).expect("create");
        assert_eq!(v.get(), 5);
        v.set(-3);
        assert_eq!(v.load(Relaxed), -3);
        assert_eq!(v.fetch_add(10, Relaxed), -3);
        assert_eq!(v.fetch_sub(1, Relaxed), 7);
        assert_eq!(v.swap(100, Relaxed), 6);
        assert_eq!(v.compare_exchange(1, 2, SeqCst, Relaxed), Err(100));
        assert_eq!(v.compare_exchange(100, 2, SeqCst, Relaxed), Ok(100));
        assert_eq!(v.clone().get(), 2);
    }

    /// A writer and a reader on one wide value at once: every read is a
    /// valid value made of words the writer wrote (torn across words is
    /// allowed), and under Miri no access is a data race.
    #[test]
    fn racing_get_and_set_are_not_data_races() {
        const ROUNDS: u64 = if cfg!(miri) { 50 } else { 20_000 };
        let v = RawValue::new([0u64; 4]).expect("create");
        let writer = {
            let v = v.clone();
            std::thread::spawn(move || {
                for k in 1..=ROUNDS {
                    v.set([k; 4]);
                }
            })
        };
        let mut last_seen = 0;
        for _ in 0..ROUNDS {
            let got = v.get();
            assert!(got.iter().all(|&w| w <= ROUNDS), "a word nobody wrote: {got:?}");
            last_seen = last_seen.max(got[0]);
        }
        writer.join().expect("writer thread panicked");
        assert_eq!(v.get(), [ROUNDS; 4], "the last set is what remains");
        assert!(last_seen <= ROUNDS);
    }

    #[test]
    fn zero_sized_types_are_refused() {
        assert!(matches!(RawValue::new(()), Err(SegmentError::InvalidSize { .. })));
    }

    #[test]
    fn struct_values_round_trip() {
        #[derive(Clone, Copy, Debug, PartialEq, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable)]
        #[repr(C)]
        struct Point {
            x: f64,
            y: f64,
        }
        let v = RawValue::new(Point { x: 1.0, y: 2.0 }).expect("create");
        v.set(Point { x: 3.0, y: 4.0 });
        assert_eq!(v.get(), Point { x: 3.0, y: 4.0 });
    }

    #[test]
    fn named_value_opens_with_type_check() {
        let name = format!("shm-test-value-{}", std::process::id());
        let v = RawValue::create_named(&name, 7u32).expect("create");
        assert_eq!(RawValue::<u32>::open(&name).expect("open").get(), 7);
        let wrong = RawValue::<i32>::open(&name).expect_err("i32 is not u32");
        assert!(wrong.to_string().contains("expected value of i32"), "{wrong}");
        Segment::unlink(&name).expect("unlink");
        drop(v);
    }
}
