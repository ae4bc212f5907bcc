//! `Value<T>` and `Array<T>`: shared plain data with a lock of their own
//! (Python's `multiprocessing.Value` and `Array`).
//!
//! The data lives in a `RawValue`/`RawArray` segment, the lock in its own.
//! `get`, `set` and the element accessors take the lock around the copy, as
//! Python's `value` property does; [`Value::update`] holds it across a
//! read-modify-write. The lock is an [`RLock`] by default, a given
//! [`Lock`]/[`RLock`], or none at all ([`SharedLock::None`]: the raw value).
//! Integer values also offer the atomic operations of `RawValue`, which need
//! no lock.
//!
//! If a holder of the lock dies mid-update, the next `get`/`set`/`update`
//! still runs (the data is plain and every bit pattern is valid) and the
//! lock's `is_inconsistent` flag tells that the value may be half-written.

use std::fmt;

use serde::{Deserialize, Serialize};
use shm_core::{AtomicInteger, OutOfBounds, RawArray, RawValue, SegmentError, ShmSafe};

use crate::{Lock, RLock};

/// The lock of a [`Value`] or [`Array`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SharedLock {
    /// A recursive lock (the default, as in Python).
    RLock(RLock),
    /// A plain lock.
    Lock(Lock),
    /// No lock: accesses are not synchronised (Python's `lock=False`).
    None,
}

/// Holds a [`SharedLock`] until dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub enum SharedLockGuard<'a> {
    /// An `RLock` level.
    RLock(crate::RLockGuard<'a>),
    /// A Lock.
    Lock(crate::LockGuard<'a>),
    /// Nothing held.
    None,
}

impl SharedLock {
    /// Takes the lock (a dead holder's lock is taken over; see the lock's
    /// `is_inconsistent`).
    pub fn lock(&self) -> SharedLockGuard<'_> {
        match self {
            Self::RLock(l) => SharedLockGuard::RLock(l.lock().unwrap_or_else(crate::OwnerDied::into_guard)),
            Self::Lock(l) => SharedLockGuard::Lock(l.lock().unwrap_or_else(crate::OwnerDied::into_guard)),
            Self::None => SharedLockGuard::None,
        }
    }

    /// Whether a dead holder may have left the data half-written.
    pub fn is_inconsistent(&self) -> bool {
        match self {
            Self::RLock(l) => l.is_inconsistent(),
            Self::Lock(l) => l.is_inconsistent(),
            Self::None => false,
        }
    }
}

/// A shared value with its own lock.
///
/// # Examples
///
/// ```
/// let v = shm_sync::Value::new(1.5f64)?;
/// v.update(|x| x * 2.0);
/// assert_eq!(v.get(), 3.0);
/// let n = shm_sync::Value::new(0u64)?;
/// n.fetch_add(2); // atomic, no lock needed
/// assert_eq!(n.get(), 2);
/// # Ok::<(), shm_core::SegmentError>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "T: ShmSafe")]
pub struct Value<T> {
    raw: RawValue<T>,
    lock: SharedLock,
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("value", &self.get())
            .finish_non_exhaustive()
    }
}

impl<T: ShmSafe> Value<T> {
    /// A value with a new [`RLock`].
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if a segment cannot be made.
    pub fn new(value: T) -> Result<Self, SegmentError> {
        Self::with_lock(value, SharedLock::RLock(RLock::new()?))
    }

    /// A value guarded by `lock` (or unguarded with [`SharedLock::None`]).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made.
    pub fn with_lock(value: T, lock: SharedLock) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawValue::new(value)?,
            lock,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &SharedLock {
        &self.lock
    }

    /// Reads the value under the lock.
    pub fn get(&self) -> T {
        let _g = self.lock.lock();
        self.raw.get()
    }

    /// Writes the value under the lock.
    pub fn set(&self, value: T) {
        let _g = self.lock.lock();
        self.raw.set(value);
    }

    /// Replaces the value with `f(value)` under the lock; returns the new value.
    pub fn update(&self, f: impl FnOnce(T) -> T) -> T {
        let _g = self.lock.lock();
        let new = f(self.raw.get());
        self.raw.set(new);
        new
    }

    /// The value without its lock.
    pub fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }
}

impl<T: AtomicInteger> Value<T> {
    /// Atomic wrapping add (no lock needed); returns the previous value.
    pub fn fetch_add(&self, v: T) -> T {
        self.raw.fetch_add(v, std::sync::atomic::Ordering::AcqRel)
    }

    /// Atomic wrapping subtract; returns the previous value.
    pub fn fetch_sub(&self, v: T) -> T {
        self.raw.fetch_sub(v, std::sync::atomic::Ordering::AcqRel)
    }
}

/// A shared array with its own lock.
///
/// # Examples
///
/// ```
/// let a = shm_sync::Array::from_slice(&[1i32, 2, 3])?;
/// a.set(0, 10).expect("in range");
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// # Ok::<(), shm_core::SegmentError>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "T: ShmSafe")]
pub struct Array<T> {
    raw: RawArray<T>,
    lock: SharedLock,
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("items", &self.to_vec())
            .finish_non_exhaustive()
    }
}

impl<T: ShmSafe> Array<T> {
    /// `len` zeroed elements with a new [`RLock`].
    ///
    /// # Errors
    ///
    /// [`SegmentError`] for a zero or too large length.
    pub fn new(len: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawArray::new(len)?,
            lock: SharedLock::RLock(RLock::new()?),
        })
    }

    /// A copy of `items` with a new [`RLock`].
    ///
    /// # Errors
    ///
    /// As [`Array::new`].
    pub fn from_slice(items: &[T]) -> Result<Self, SegmentError> {
        Self::with_lock(items, SharedLock::RLock(RLock::new()?))
    }

    /// A copy of `items` guarded by `lock`.
    ///
    /// # Errors
    ///
    /// As [`Array::new`].
    pub fn with_lock(items: &[T], lock: SharedLock) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawArray::from_slice(items)?,
            lock,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &SharedLock {
        &self.lock
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always false: arrays hold at least one element.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Element `i` under the lock.
    pub fn get(&self, i: usize) -> Option<T> {
        let _g = self.lock.lock();
        self.raw.get(i)
    }

    /// Sets element `i` under the lock.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] past the end.
    pub fn set(&self, i: usize, v: T) -> Result<(), OutOfBounds> {
        let _g = self.lock.lock();
        self.raw.set(i, v)
    }

    /// A copy of every element, taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let _g = self.lock.lock();
        self.raw.to_vec()
    }

    /// Runs `f` on the whole array under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&RawArray<T>) -> R) -> R {
        let _g = self.lock.lock();
        f(&self.raw)
    }

    /// The array without its lock.
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }
}
