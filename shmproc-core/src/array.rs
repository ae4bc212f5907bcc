//! `RawArray<T>`: a fixed-length run of plain-data values in shared memory,
//! without a lock (Python's `multiprocessing.RawArray`).

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::ptr::NonNull;

use crate::atomic::{AtomicInteger, ShmSafe, copy};
use crate::error::{OutOfBounds, SegmentError};
use crate::segment::{Mapped, Segment, SegmentKind, SegmentObject, TypeIdentity};

/// A fixed-length array of `T` in its own shared segment.
///
/// Clones share the elements; so does a child that receives it as an
/// argument. Element reads and writes, and the bulk copies, go through
/// relaxed atomic words ([`crate::atomic::copy`]) in the unit of `T`'s
/// alignment (at most 8 bytes), the access size of [`RawArray::atomics`],
/// so racing accesses from other threads or processes are never a data
/// race. An element wider than its unit may be read torn (a mix of old and
/// new words, still a valid `T`) while another process writes it, and a
/// bulk copy is not a snapshot: each element or word is read once, in
/// order, while others may write. For concurrent read-modify-write use
/// [`RawArray::atomics`] (integer elements) or a lock.
///
/// # Examples
///
/// ```
/// use shmproc_core::RawArray;
///
/// let a = RawArray::from_slice(&[1i32, 2, 3])?;
/// a.set(0, -1)?;
/// assert_eq!(a.to_vec(), [-1, 2, 3]);
/// assert!(a.set(3, 0).is_err());
/// a.atomics()[1].fetch_add(40, std::sync::atomic::Ordering::Relaxed);
/// assert_eq!(a.get(1), Some(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RawArray<T> {
    map: Mapped<T>,
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: elements are only reached through atomic accesses (relaxed word
// copies or `atomics()`); T is Send + Sync plain data; `map` keeps the
// mapping alive. `&RawArray` hands out copies, or atomics which are Sync.
crate::segment_object!(unsafe Send + Sync, [T: ShmSafe] RawArray<T>);

impl<T: ShmSafe> SegmentObject for RawArray<T> {
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<T>(SegmentKind::ARRAY)
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let (map, len) = Mapped::with_count(seg, &Self::identity(), None)?;
        Ok(Self {
            len,
            ptr: map.as_ptr(),
            map,
        })
    }

    fn segment(&self) -> &Segment {
        self.map.segment()
    }
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            ptr: self.ptr,
            len: self.len,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}

impl<T: ShmSafe> RawArray<T> {
    fn bytes_for(len: usize) -> Result<usize, SegmentError> {
        len.checked_mul(size_of::<T>()).ok_or(SegmentError::InvalidSize {
            requested: u64::MAX,
            reason: "element count times element size overflows",
        })
    }

    /// A new array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// [`SegmentError::InvalidSize`] when `len` is zero or too large.
    pub fn new(len: usize) -> Result<Self, SegmentError> {
        Self::create(Self::bytes_for(len)?)
    }

    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn from_slice(items: &[T]) -> Result<Self, SegmentError> {
        Ok(Self::new(items.len())?.with(items))
    }

    /// Copies `items` (exactly `len` of them) into a new array.
    fn with(self, items: &[T]) -> Self {
        debug_assert_eq!(items.len(), self.len);
        let n = items.len().min(self.len);
        // SAFETY: the first n <= len elements are in bounds; see `elem`.
        unsafe { copy::store_slice(self.ptr.as_ptr(), &items[..n]) };
        self
    }

    /// Pointer to element `i`. Every pointer this type dereferences comes
    /// from here with `i` checked against `len` (or a range checked by
    /// [`RawArray::check`]): the element lies inside the payload, which
    /// `self.map` keeps mapped, and is aligned for `T` (the payload is
    /// 128-aligned, `T`'s alignment is at most 128 and divides its size).
    /// Every access to the elements is atomic: this type's copies go
    /// through [`copy`] in `T`'s unit, [`RawArray::atomics`] uses `T`'s own
    /// size, and other processes run the same code.
    #[inline]
    fn elem(&self, i: usize) -> *mut T {
        self.ptr.as_ptr().wrapping_add(i)
    }

    /// Copies `dst.len()` elements starting at `start` out of the array.
    ///
    /// # Safety
    ///
    /// `start..start + dst.len()` lies within `0..len`.
    #[inline]
    unsafe fn load_into(&self, start: usize, dst: &mut [MaybeUninit<T>]) {
        // SAFETY: the range is in bounds (caller); see `elem`.
        unsafe { copy::load_slice(self.elem(start), dst) };
    }

    /// Copies the elements in `range` (already checked) into a new vector.
    fn collect(&self, range: Range<usize>) -> Vec<T> {
        let n = range.end - range.start;
        let mut out: Vec<T> = Vec::with_capacity(n);
        // SAFETY: `range` lies within `0..len` (checked by the callers);
        // the spare capacity holds at least n elements.
        unsafe { self.load_into(range.start, &mut out.spare_capacity_mut()[..n]) };
        // SAFETY: `load_into` wrote all n elements.
        unsafe { out.set_len(n) };
        out
    }

    /// A new named array holding a copy of `items`, which other programs can
    /// open with [`RawArray::open`].
    ///
    /// # Errors
    ///
    /// As [`Segment::create_named`].
    pub fn create_named(name: &str, items: &[T]) -> Result<Self, SegmentError> {
        Ok(Self::create_named_in(name, Self::bytes_for(items.len())?)?.with(items))
    }

    /// Opens the named array `name`, checking that it holds `T`s.
    ///
    /// # Errors
    ///
    /// As [`Segment::open_named`], including [`SegmentError::TypeMismatch`].
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::open_named(name)
    }

    /// Wraps a segment, checking that it holds a whole number of `T`s.
    ///
    /// # Errors
    ///
    /// [`SegmentError::TypeMismatch`] or [`SegmentError::BadPayload`].
    pub fn from_segment(seg: Segment) -> Result<Self, SegmentError> {
        Self::attach(seg)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: arrays hold at least one element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, range: Range<usize>) -> Result<(), OutOfBounds> {
        if range.start <= range.end && range.end <= self.len {
            Ok(())
        } else {
            Err(OutOfBounds {
                start: range.start,
                end: range.end,
                len: self.len,
            })
        }
    }

    /// Element `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        (i < self.len).then(|| {
            // SAFETY: i < len; see `elem` for bounds, alignment and why every
            // access is atomic. T accepts any bit pattern, torn or not.
            unsafe { copy::load(self.elem(i)) }
        })
    }

    /// Sets element `i`.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] when `i >= len`.
    #[inline]
    pub fn set(&self, i: usize, value: T) -> Result<(), OutOfBounds> {
        self.check(i..i.saturating_add(1))?;
        // SAFETY: i < len, checked above; see `elem`.
        unsafe { copy::store(self.elem(i), value) };
        Ok(())
    }

    /// Copies `range` out.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] for a range past the end.
    pub fn read(&self, range: Range<usize>) -> Result<Vec<T>, OutOfBounds> {
        self.check(range.clone())?;
        Ok(self.collect(range))
    }

    /// Copies `items` in, starting at element `start`.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] if the items would run past the end.
    pub fn write(&self, start: usize, items: &[T]) -> Result<(), OutOfBounds> {
        self.check(start..start.saturating_add(items.len()))?;
        // SAFETY: start..start + items.len() is within 0..len, checked
        // above; see `elem`.
        unsafe { copy::store_slice(self.elem(start), items) };
        Ok(())
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        for i in 0..self.len {
            // SAFETY: i < len; see `elem`.
            unsafe { copy::store(self.elem(i), value) };
        }
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        self.collect(0..self.len)
    }

    /// Raw pointer to the first element. Other processes may write the
    /// elements at any time: access them only atomically (for example with
    /// [`crate::atomic::copy`]), never through a plain read, write or
    /// reference.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// The segment behind this array.
    pub fn segment(&self) -> &Segment {
        self.map.segment()
    }
}

impl<T: AtomicInteger> RawArray<T> {
    /// The elements as `core` atomics, for any atomic operation.
    #[inline]
    pub fn atomics(&self) -> &[T::Atomic] {
        // SAFETY: T::Atomic has T's size and alignment (AtomicInteger); the
        // len elements are in bounds and live as long as `self.map`; shared
        // atomics may alias across processes by design.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<T::Atomic>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::shared::Ordering::Relaxed;

    #[test]
    fn bounds_are_checked() {
        let a = RawArray::<u32>::new(4).expect("create");
        assert_eq!(a.len(), 4);
        assert_eq!(a.to_vec(), [0; 4]);
        assert_eq!(a.get(4), None);
        assert_eq!(
            a.set(4, 1),
            Err(OutOfBounds {
                start: 4,
                end: 5,
                len: 4
            })
        );
        assert_eq!(a.set(usize::MAX, 1).map_err(|e| e.len), Err(4));
        assert!(a.read(2..5).is_err());
        #[allow(clippy::reversed_empty_ranges, reason = "the point of the test")]
        let backwards = a.read(3..1);
        assert!(backwards.is_err());
        assert!(a.write(3, &[1, 2]).is_err());
        assert_eq!(a.to_vec(), [0; 4], "a refused write changes nothing");
        a.write(2, &[7, 8]).expect("fits");
        assert_eq!(a.read(1..4).expect("in range"), [0, 7, 8]);
        a.fill(9);
        assert_eq!(a.to_vec(), [9; 4]);
    }

    /// Bulk writes racing bulk reads and atomic adds: no data race (Miri
    /// checks), every element read is one some writer wrote, and the atomic
    /// adds on an element no bulk write touches all count.
    #[test]
    fn racing_bulk_copies_and_atomics_are_not_data_races() {
        const ROUNDS: u64 = if cfg!(miri) { 20 } else { 2_000 };
        let a = RawArray::<u64>::new(64).expect("create");
        let writer = {
            let a = a.clone();
            std::thread::spawn(move || {
                for k in 1..=ROUNDS {
                    a.write(0, &[k; 63]).expect("in range");
                    a.atomics()[63].fetch_add(1, Relaxed);
                }
            })
        };
        for _ in 0..ROUNDS {
            let got = a.to_vec();
            assert!(got[..63].iter().all(|&w| w <= ROUNDS), "an element nobody wrote");
            assert!(a.get(5).is_some_and(|w| w <= ROUNDS));
        }
        writer.join().expect("writer thread panicked");
        assert_eq!(a.read(0..63).expect("in range"), vec![ROUNDS; 63]);
        assert_eq!(a.get(63), Some(ROUNDS), "every atomic add counted");
    }

    #[test]
    fn zero_length_and_overflowing_lengths_are_errors() {
        assert!(matches!(RawArray::<u8>::new(0), Err(SegmentError::InvalidSize { .. })));
        assert!(matches!(
            RawArray::<u64>::new(usize::MAX),
            Err(SegmentError::InvalidSize { .. })
        ));
    }

    #[test]
    fn clones_share_and_atomics_work() {
        let a = RawArray::from_slice(&[1u64, 2, 3]).expect("create");
        let b = a.clone();
        b.set(0, 10).expect("in range");
        assert_eq!(a.get(0), Some(10));
        assert_eq!(a.atomics()[2].fetch_add(5, Relaxed), 3);
        assert_eq!(b.get(2), Some(8));
    }

    #[test]
    fn value_type_is_checked_when_wrapping_a_segment() {
        let a = RawArray::from_slice(&[1u32, 2]).expect("create");
        let fd = a.segment().fd().try_clone_to_owned().expect("dup");
        let seg = Segment::from_fd(fd, None).expect("attach");
        assert!(matches!(
            RawArray::<i32>::from_segment(seg),
            Err(SegmentError::TypeMismatch { .. })
        ));
    }
}
