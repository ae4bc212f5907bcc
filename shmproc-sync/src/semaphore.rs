//! `Semaphore` and `BoundedSemaphore` (Python's).
//!
//! # Algorithm
//!
//! Words: `value` (the permits) and `sleepers`. Acquire takes a permit with
//! a compare-and-swap `v -> v - 1`; with none left it counts itself in
//! `sleepers` and sleeps on `value` while it is 0. Release adds permits and
//! wakes as many sleepers as permits it added, only if `sleepers` is not 0.
//!
//! # Memory ordering
//!
//! Taking a permit is Acquire and adding is Release, so a permit carries
//! what the releaser wrote. The sleeper count is a Dekker pair: the sleeper
//! increments `sleepers` then reads `value`; the releaser increments
//! `value` then reads `sleepers`. Both sides are `SeqCst`, so at least one of
//! them sees the other: a releaser that reads no sleeper is ordered before
//! the sleeper's increment, whose following read of `value` (and the
//! kernel's re-read at sleep) then sees the new permit. No wake is lost.
//!
//! A value above [`SEM_VALUE_MAX`] can only come from a peer that wrote
//! garbage; a waiter that finds one resets it to 0 permits.
//!
//! A semaphore has no owner: a process that dies holding a permit never
//! gives it back (as with Python's and POSIX semaphores). Use a `Lock` where
//! a dead holder must be detected.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc_core::sys::{Deadline, FutexWait};
use shmproc_core::{SegmentError, SegmentKind};

use crate::error::{AcquireTimeoutError, SyncError, TryAcquireError};
#[cfg(not(loom))]
use crate::park::Futex;
use crate::park::Park;
#[cfg(not(loom))]
use crate::shared::Shared;
use crate::shared::SharedState;
use crate::sync::AtomicU32;
use crate::sync::Ordering::{Acquire, Relaxed, SeqCst};

/// Largest value (Python's `SEM_VALUE_MAX` on Linux).
pub const SEM_VALUE_MAX: u32 = i32::MAX.unsigned_abs();

/// The words of a semaphore.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RawSemaphore {
    value: AtomicU32,
    sleepers: AtomicU32,
    /// 0 for a plain semaphore, else the bound of a bounded one.
    bound: AtomicU32,
}

// SAFETY: three AtomicU32, repr(C); zero is "no permits, unbounded".
unsafe impl SharedState for RawSemaphore {
    const KIND: SegmentKind = SegmentKind::SEMAPHORE;
}

impl RawSemaphore {
    pub(crate) fn init(&self, value: u32, bounded: bool) {
        self.value.store(value, Relaxed);
        self.bound.store(if bounded { value.max(1) } else { 0 }, Relaxed);
    }

    fn try_take(&self) -> bool {
        // Relaxed: a first look; the CAS below is Acquire.
        let mut v = self.value.load(Relaxed);
        while v > 0 && v <= SEM_VALUE_MAX {
            // Acquire: pairs with the Release in `release`.
            match self.value.compare_exchange_weak(v, v - 1, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    pub(crate) fn acquire<P: Park>(&self, deadline: Option<Deadline>) -> bool {
        if self.try_take() {
            return true;
        }
        for _ in 0..crate::park::spins() {
            core::hint::spin_loop();
            if self.try_take() {
                return true;
            }
        }
        // SeqCst: the Dekker pair with `release` (see the module docs).
        self.sleepers.fetch_add(1, SeqCst);
        let got = loop {
            if self.try_take() {
                break true;
            }
            if P::passed(deadline) {
                break false;
            }
            // SeqCst: the sleeper's side of the Dekker pair.
            let v = self.value.load(SeqCst);
            if v > SEM_VALUE_MAX {
                // Not a count this code ever writes: a peer scribbled on it.
                // Reset it to "no permits" (documented) rather than spin.
                let _ = self.value.compare_exchange(v, 0, Relaxed, Relaxed);
                continue;
            }
            if v != 0 {
                continue;
            }
            if P::wait(&self.value, 0, deadline) == FutexWait::TimedOut {
                break self.try_take();
            }
        };
        self.sleepers.fetch_sub(1, Relaxed);
        got
    }

    pub(crate) fn release<P: Park>(&self, n: u32) -> Result<(), SyncError> {
        // Relaxed: the bound is set once at creation.
        let bound = self.bound.load(Relaxed);
        let mut v = self.value.load(Relaxed);
        loop {
            let limit = if bound == 0 { SEM_VALUE_MAX } else { bound };
            let new = match v.checked_add(n) {
                Some(new) if new <= limit => new,
                _ if bound != 0 => {
                    return Err(SyncError::TooManyReleases {
                        initial: bound,
                        found: u64::from(v) + u64::from(n),
                    });
                }
                _ => {
                    return Err(SyncError::OutOfRange {
                        what: "Semaphore release",
                        bound: "a value of at most 2147483647",
                        got: u64::from(v) + u64::from(n),
                    });
                }
            };
            // Release + SeqCst: publishes the releaser's writes with the permit,
            // and is the releaser's side of the Dekker pair.
            match self.value.compare_exchange_weak(v, new, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        // SeqCst: see the module docs.
        if self.sleepers.load(SeqCst) != 0 {
            P::wake(&self.value, n);
        }
        Ok(())
    }

    pub(crate) fn value(&self) -> u32 {
        self.value.load(Relaxed)
    }
}

/// A counting semaphore in shared memory (Python's `Semaphore`):
/// [`Semaphore::release`] may raise the value past its start.
///
/// # Examples
///
/// ```
/// let s = shmproc_sync::Semaphore::new(1)?;
/// {
///     let _permit = s.acquire();
///     assert!(s.try_acquire().is_err());
/// }
/// s.try_acquire()?.forget(); // keep the permit taken
/// assert_eq!(s.value(), 0);
/// s.release()?;
/// assert_eq!(s.value(), 1);
/// # Ok::<(), shmproc_core::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    shared: Shared<RawSemaphore>,
}

/// A semaphore whose `release` past its initial value is an error
/// (Python's `BoundedSemaphore`).
#[cfg(not(loom))]
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    inner: Semaphore,
}

/// One permit of a [`Semaphore`] or [`BoundedSemaphore`], given back when
/// dropped (or kept taken with [`SemaphoreGuard::forget`]).
#[cfg(not(loom))]
#[must_use = "the permit is given back when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a RawSemaphore,
}

#[cfg(not(loom))]
impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

#[cfg(not(loom))]
impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Gives back the permit this guard took: never past the bound, as
        // long as nobody released permits they did not take.
        let _ = self.sem.release::<Futex>(1);
    }
}

#[cfg(not(loom))]
impl SemaphoreGuard<'_> {
    /// Python's `release()`: gives the permit back now (as dropping the
    /// guard does).
    pub fn release(self) {
        drop(self);
    }

    /// Keeps the permit taken (Python's acquire without a release).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

#[cfg(not(loom))]
impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.value()).finish()
    }
}

#[cfg(not(loom))]
impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .finish()
    }
}

#[cfg(not(loom))]
impl Semaphore {
    fn check(value: u32) -> Result<(), SegmentError> {
        if value > SEM_VALUE_MAX {
            return Err(SegmentError::InvalidSize {
                requested: u64::from(value),
                reason: "a semaphore value is at most 2147483647",
            });
        }
        Ok(())
    }

    fn make(shared: Shared<RawSemaphore>, value: u32, bounded: bool) -> Self {
        shared.get().init(value, bounded);
        Self { shared }
    }

    /// A semaphore holding `value` permits.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made or `value` exceeds
    /// [`SEM_VALUE_MAX`].
    pub fn new(value: u32) -> Result<Self, SegmentError> {
        Self::check(value)?;
        Ok(Self::make(Shared::create()?, value, false))
    }

    /// A semaphore holding `value` permits in a segment named `name`,
    /// which any process may [`Semaphore::open`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`], and if the name is taken or invalid.
    pub fn create_named(name: &str, value: u32) -> Result<Self, SegmentError> {
        Self::check(value)?;
        Ok(Self::make(Shared::create_named(name)?, value, false))
    }

    /// Opens the semaphore named `name` (type and header checked).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if there is none, or it holds another type.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::open(name)?,
        })
    }

    fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard { sem: self.shared.get() }
    }

    /// Takes a permit, waiting as long as needed.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.shared.get().acquire::<Futex>(None);
        self.guard()
    }

    /// Takes a permit if one is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] when none is free.
    pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>, TryAcquireError> {
        if self.shared.get().try_take() {
            Ok(self.guard())
        } else {
            Err(TryAcquireError::WouldBlock)
        }
    }

    /// Waits up to `timeout` for a permit.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`] when none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, AcquireTimeoutError> {
        if self.shared.get().acquire::<Futex>(Some(Deadline::after(timeout))) {
            Ok(self.guard())
        } else {
            Err(AcquireTimeoutError::Timeout(timeout))
        }
    }

    /// Adds one permit.
    ///
    /// # Errors
    ///
    /// [`SyncError::OutOfRange`] past [`SEM_VALUE_MAX`].
    pub fn release(&self) -> Result<(), SyncError> {
        self.shared.get().release::<Futex>(1)
    }

    /// Adds `n` permits.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::release`].
    pub fn release_n(&self, n: u32) -> Result<(), SyncError> {
        self.shared.get().release::<Futex>(n)
    }

    /// The number of free permits now.
    pub fn value(&self) -> u32 {
        self.shared.get().value()
    }
}

#[cfg(not(loom))]
impl BoundedSemaphore {
    /// A bounded semaphore holding `value` permits, which is also its bound.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    pub fn new(value: u32) -> Result<Self, SegmentError> {
        Semaphore::check(value)?;
        Ok(Self {
            inner: Semaphore::make(Shared::create()?, value, true),
        })
    }

    /// A bounded semaphore in a segment named `name` (see [`Semaphore::create_named`]).
    ///
    /// # Errors
    ///
    /// As [`Semaphore::create_named`].
    pub fn create_named(name: &str, value: u32) -> Result<Self, SegmentError> {
        Semaphore::check(value)?;
        Ok(Self {
            inner: Semaphore::make(Shared::create_named(name)?, value, true),
        })
    }

    /// Opens the bounded semaphore named `name`.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::open`]; [`SegmentError::BadPayload`] when the
    /// semaphore there is not bounded.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        let inner = Semaphore::open(name)?;
        // Relaxed: set once at creation.
        if inner.shared.get().bound.load(Relaxed) == 0 {
            return Err(SegmentError::TypeMismatch {
                expected: "BoundedSemaphore".into(),
                found: "Semaphore".into(),
            });
        }
        Ok(Self { inner })
    }

    /// See [`Semaphore::acquire`].
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.inner.acquire()
    }

    /// See [`Semaphore::try_acquire`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>, TryAcquireError> {
        self.inner.try_acquire()
    }

    /// See [`Semaphore::acquire_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, AcquireTimeoutError> {
        self.inner.acquire_timeout(timeout)
    }

    /// Adds one permit.
    ///
    /// # Errors
    ///
    /// [`SyncError::TooManyReleases`] past the initial value.
    pub fn release(&self) -> Result<(), SyncError> {
        self.inner.release()
    }

    /// Adds `n` permits.
    ///
    /// # Errors
    ///
    /// [`SyncError::TooManyReleases`] past the initial value.
    pub fn release_n(&self, n: u32) -> Result<(), SyncError> {
        self.inner.release_n(n)
    }

    /// The number of free permits now.
    pub fn value(&self) -> u32 {
        self.inner.value()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bounds() {
        let s = Semaphore::new(2).expect("create");
        let a = s.acquire();
        let b = s.try_acquire().expect("one left");
        assert!(matches!(s.try_acquire(), Err(TryAcquireError::WouldBlock)));
        assert!(matches!(
            s.acquire_timeout(Duration::from_millis(5)),
            Err(AcquireTimeoutError::Timeout(_))
        ));
        drop(a);
        assert_eq!(s.value(), 1);
        b.forget();
        assert_eq!(s.value(), 1, "a forgotten permit stays taken");
        s.release_n(3).expect("may exceed the start value");
        assert_eq!(s.value(), 4);
        let b = BoundedSemaphore::new(1).expect("create");
        assert_eq!(b.release(), Err(SyncError::TooManyReleases { initial: 1, found: 2 }));
        drop(b.acquire());
        assert_eq!(b.value(), 1, "the guard gave it back");
        assert!(Semaphore::new(u32::MAX).is_err());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri's clock passes the 20 ms deadline while spinning, and acquire resets garbage only before its deadline"
    )]
    fn a_garbage_count_is_reset_not_spun_on() {
        let s = Semaphore::new(0).expect("create");
        s.shared.get().value.store(u32::MAX, Relaxed);
        // Ordered by what the waiter leaves in the words, not by time: it
        // counts itself a sleeper, repairs the count to 0, and then can
        // only be woken by a real release. The bounds only catch a hang.
        let t = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.acquire_timeout(Duration::from_secs(60))
                    .map(SemaphoreGuard::forget)
                    .is_ok()
            })
        };
        let start = std::time::Instant::now();
        // Relaxed: polling a counter for a test.
        while s.value() != 0 || s.shared.get().sleepers.load(Relaxed) != 1 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the waiter neither repaired the garbage count nor slept (value {:#x})",
                s.value()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(s.try_acquire().is_err(), "0 permits after the repair");
        s.release().expect("release");
        assert!(t.join().expect("thread"), "the release reached the waiter");
        assert_eq!(s.value(), 0, "the waiter took the one permit");
        // Timed, with the garbage left for it alone: gives up cleanly.
        s.shared.get().value.store(u32::MAX - 1, Relaxed);
        assert!(s.acquire_timeout(Duration::from_millis(1)).is_err());
    }

    #[test]
    fn wakes_a_sleeper() {
        let s = Semaphore::new(0).expect("create");
        let t = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.acquire_timeout(Duration::from_secs(30))
                    .map(SemaphoreGuard::forget)
                    .is_ok()
            })
        };
        s.release().expect("release");
        assert!(t.join().expect("thread"));
    }
}
