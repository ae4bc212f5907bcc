//! `Value<T>` and `Array<T>`: shared plain data with a lock of their own
//! (Python's `multiprocessing.Value` and `Array`).
//!
//! The data lives in a `RawValue`/`RawArray` segment, the lock in its own.
//! `get`, `set` and the element accessors take the lock around the copy, as
//! Python's `value` property does; [`Value::update`] holds it across a
//! read-modify-write. The lock is an [`RLock`] by default, a given
//! [`Lock`]/[`RLock`], or none at all ([`SharedLock::None`]: the raw value).
//! Integer values also offer [`Value::fetch_add`] and [`Value::fetch_sub`],
//! which take the lock too: a lock-free add racing a locked
//! [`Value::update`] (a read, then a write) would be overwritten by the
//! update's write and lost. Code that wants lock-free counting uses
//! [`Value::get_obj`] (a `RawValue`) and its atomic operations, and then
//! must not mix them with `update` on the same value.
//!
//! If a holder of the lock dies mid-update, the next `get`/`set`/`update`
//! still runs (the data is plain and every bit pattern is valid) and the
//! lock's `is_inconsistent` flag tells that the value may be half-written.

use std::fmt;

use serde::{Deserialize, Serialize};
use shmproc_core::{AtomicInteger, OutOfBounds, RawArray, RawValue, SegmentError, ShmSafe};

use std::time::Duration;

use crate::error::{AcquireTimeoutError, OwnerDied, TryAcquireError};
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

impl SharedLockGuard<'_> {
    /// See [`LockGuard::mark_consistent`](crate::LockGuard::mark_consistent).
    pub fn mark_consistent(&self) {
        match self {
            Self::RLock(g) => g.mark_consistent(),
            Self::Lock(g) => g.mark_consistent(),
            Self::None => {}
        }
    }
}

impl SharedLock {
    /// Takes the lock, as [`Lock::acquire`] (always succeeds for [`SharedLock::None`]).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], as [`Lock::acquire`].
    pub fn acquire(&self) -> Result<SharedLockGuard<'_>, OwnerDied> {
        Ok(match self {
            Self::RLock(l) => SharedLockGuard::RLock(l.acquire()?),
            Self::Lock(l) => SharedLockGuard::Lock(l.acquire()?),
            Self::None => SharedLockGuard::None,
        })
    }

    /// As [`Lock::try_acquire`].
    ///
    /// # Errors
    ///
    /// As [`Lock::try_acquire`].
    pub fn try_acquire(&self) -> Result<SharedLockGuard<'_>, TryAcquireError> {
        Ok(match self {
            Self::RLock(l) => SharedLockGuard::RLock(l.try_acquire()?),
            Self::Lock(l) => SharedLockGuard::Lock(l.try_acquire()?),
            Self::None => SharedLockGuard::None,
        })
    }

    /// As [`Lock::acquire_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SharedLockGuard<'_>, AcquireTimeoutError> {
        Ok(match self {
            Self::RLock(l) => SharedLockGuard::RLock(l.acquire_timeout(timeout)?),
            Self::Lock(l) => SharedLockGuard::Lock(l.acquire_timeout(timeout)?),
            Self::None => SharedLockGuard::None,
        })
    }

    /// As [`Lock::recover`]: takes it whatever its state. The value's own
    /// `get`/`set`/`update` take it this way (plain data has no invalid
    /// state), leaving an inconsistent lock inconsistent.
    pub fn recover(&self) -> SharedLockGuard<'_> {
        match self {
            Self::RLock(l) => SharedLockGuard::RLock(l.recover()),
            Self::Lock(l) => SharedLockGuard::Lock(l.recover()),
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
/// let v = shmproc_sync::Value::new(1.5f64)?;
/// v.update(|x| x * 2.0);
/// assert_eq!(v.get(), 3.0);
/// let n = shmproc_sync::Value::new(0u64)?;
/// n.fetch_add(2); // under the lock, so it never races an `update`
/// n.update(|x| x + 1);
/// assert_eq!(n.get(), 3);
/// # Ok::<(), shmproc_core::SegmentError>(())
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

    /// A value with a new [`RLock`], both named: the value `name`, its lock
    /// `name.lock`; any process may [`Value::open`] it.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if a name is taken or invalid.
    pub fn create_named(name: &str, value: T) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawValue::create_named(name, value)?,
            lock: SharedLock::RLock(RLock::create_named(&format!("{name}.lock"))?),
        })
    }

    /// Opens the value named `name` and its lock (types and headers checked).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if either is missing or holds another type.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawValue::open(name)?,
            lock: SharedLock::RLock(RLock::open(&format!("{name}.lock"))?),
        })
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
        let _g = self.lock.recover();
        self.raw.get()
    }

    /// Writes the value under the lock.
    pub fn set(&self, value: T) {
        let _g = self.lock.recover();
        self.raw.set(value);
    }

    /// Replaces the value with `f(value)` under the lock; returns the new value.
    pub fn update(&self, f: impl FnOnce(T) -> T) -> T {
        let _g = self.lock.recover();
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
    /// Wrapping add under the lock; returns the previous value.
    ///
    /// The lock is what makes this safe to mix with [`Value::update`] and
    /// [`Value::set`] from other threads and processes: the add itself is
    /// atomic, but an `update` reads and writes under the lock only, so a
    /// lock-free add landing between its read and its write would be lost.
    /// For a counter touched by nothing but atomic operations, use
    /// `get_obj().fetch_add(..)`, which skips the lock.
    pub fn fetch_add(&self, v: T) -> T {
        let _g = self.lock.recover();
        // AcqRel: as the lock-free form would order it, for code that reads
        // the value with `get_obj().load(Acquire)` without the lock.
        self.raw.fetch_add(v, std::sync::atomic::Ordering::AcqRel)
    }

    /// Wrapping subtract under the lock; returns the previous value. See
    /// [`Value::fetch_add`] for why the lock is taken.
    pub fn fetch_sub(&self, v: T) -> T {
        let _g = self.lock.recover();
        // AcqRel: as in `fetch_add`.
        self.raw.fetch_sub(v, std::sync::atomic::Ordering::AcqRel)
    }
}

/// A shared array with its own lock.
///
/// # Examples
///
/// ```
/// let a = shmproc_sync::Array::from_slice(&[1i32, 2, 3])?;
/// a.set(0, 10).expect("in range");
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// # Ok::<(), shmproc_core::SegmentError>(())
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

    /// `len` zeroed elements with a new [`RLock`], both named: the array
    /// `name`, its lock `name.lock`; any process may [`Array::open`] it.
    ///
    /// # Errors
    ///
    /// As [`Array::new`], and if a name is taken or invalid.
    pub fn create_named(name: &str, len: usize) -> Result<Self, SegmentError> {
        let zeros = vec![<T as zerocopy::FromZeros>::new_zeroed(); len];
        Ok(Self {
            raw: RawArray::create_named(name, &zeros)?,
            lock: SharedLock::RLock(RLock::create_named(&format!("{name}.lock"))?),
        })
    }

    /// Opens the array named `name` and its lock (types and headers checked).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if either is missing or holds another type.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawArray::open(name)?,
            lock: SharedLock::RLock(RLock::open(&format!("{name}.lock"))?),
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
        let _g = self.lock.recover();
        self.raw.get(i)
    }

    /// Sets element `i` under the lock.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] past the end.
    pub fn set(&self, i: usize, v: T) -> Result<(), OutOfBounds> {
        let _g = self.lock.recover();
        self.raw.set(i, v)
    }

    /// A copy of every element, taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let _g = self.lock.recover();
        self.raw.to_vec()
    }

    /// Runs `f` on the whole array under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&RawArray<T>) -> R) -> R {
        let _g = self.lock.recover();
        f(&self.raw)
    }

    /// The array without its lock.
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// `update` (locked read then write) and `fetch_add`/`fetch_sub` from
    /// several threads at once: no increment may be lost. Exact count, no
    /// timing: it fails whenever an add lands inside an update.
    #[test]
    fn update_and_fetch_add_mixed_lose_nothing() {
        // Miri interprets: a few rounds still interleave the four threads.
        const ROUNDS: u64 = if cfg!(miri) { 50 } else { 20_000 };
        let v = Value::new(0u64).expect("create");
        // All four start together, so their loops overlap.
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let workers: Vec<_> = (0..4)
            .map(|k| {
                let (v, start) = (v.clone(), std::sync::Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..ROUNDS {
                        match k {
                            0 => {
                                v.update(|x| x + 1);
                            }
                            1 => {
                                v.fetch_add(1);
                            }
                            2 => {
                                v.fetch_add(2);
                                v.fetch_sub(1);
                            }
                            _ => {
                                v.update(|x| x + 3);
                                v.update(|x| x - 2);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker thread panicked");
        }
        assert_eq!(v.get(), 4 * ROUNDS, "an update or an add was lost");
    }

    /// One interleaving forced by handshakes: an add is started while an
    /// `update` holds the lock between its read and its write. With the add
    /// under the lock it waits for the update (the update's bounded wait for
    /// it runs out, which only slows the test), and both count; a lock-free
    /// add would land at once and be overwritten.
    #[test]
    fn an_add_inside_an_update_is_not_lost() {
        use std::sync::mpsc::{RecvTimeoutError, channel};
        use std::time::Duration;
        const ROUNDS: u64 = 10;
        let v = Value::new(0u64).expect("create");
        let (go_tx, go_rx) = channel::<()>();
        let (done_tx, done_rx) = channel::<()>();
        let adder = {
            let v = v.clone();
            std::thread::spawn(move || {
                while go_rx.recv().is_ok() {
                    v.fetch_add(1);
                    done_tx.send(()).expect("the test thread waits for this");
                }
            })
        };
        for _ in 0..ROUNDS {
            let mut added_inside = false;
            v.update(|x| {
                go_tx.send(()).expect("adder alive");
                match done_rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(()) => added_inside = true,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => panic!("the adder thread died"),
                }
                x + 1
            });
            if !added_inside {
                done_rx
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the add finishes once the update releases the lock");
            }
        }
        drop(go_tx);
        adder.join().expect("adder thread panicked");
        assert_eq!(v.get(), 2 * ROUNDS, "an add that ran inside an update was lost");
    }

    #[test]
    fn fetch_ops_without_a_lock_are_the_raw_atomics() {
        let v = Value::with_lock(10u32, SharedLock::None).expect("create");
        assert_eq!(v.fetch_add(5), 10);
        assert_eq!(v.fetch_sub(3), 15);
        assert_eq!(v.get(), 12);
    }
}
