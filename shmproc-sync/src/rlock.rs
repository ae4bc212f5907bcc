//! `RLock`: a recursive lock owned by one thread of one process (Python's
//! `multiprocessing.RLock`).
//!
//! The words are a [`Lock`](crate::Lock)'s, with the holder's *thread*
//! owner id (tid and start tag, see the lock's "Owner identity") instead of
//! its process's, plus a recursion count that only the holder touches.
//! Thread ids are unique across the machine, so the holder test is one
//! load; a scribbled or reused tid is caught by its start tag as a pid is.
//! A holder thread that dies (its process killed, or the thread ended while
//! holding) is noticed like a dead `Lock` holder: the next acquirer gets the
//! lock with [`OwnerDied`] and a count of one.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc_core::SegmentKind;
use shmproc_core::sys::Deadline;

use crate::error::{AcquireTimeoutError, OwnerDied, SyncError, TryAcquireError};
use crate::lock::{RawLock, Taken};
#[cfg(not(loom))]
use crate::park::Futex;
use crate::park::Park;
#[cfg(not(loom))]
use crate::shared::Shared;
use crate::shared::SharedState;
use crate::sync::AtomicU32;
use crate::sync::Ordering::Relaxed;

/// The error for a release by `caller` of a lock `holder` holds (owner ids;
/// the error shows the thread ids).
fn not_owner(holder: u32, caller: u32) -> SyncError {
    SyncError::NotOwner {
        holder: crate::park::task_of(holder),
        caller: crate::park::task_of(caller),
    }
}

/// The words of a recursive lock.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RawRLock {
    lock: RawLock,
    /// Recursion depth; written only by the holder (Relaxed: the lock's own
    /// Acquire/Release order it between holders).
    count: AtomicU32,
}

// SAFETY: AtomicU32 fields only (RawLock is two), repr(C); zero is "free".
unsafe impl SharedState for RawRLock {
    const KIND: SegmentKind = SegmentKind::RLOCK;
}

impl RawRLock {
    /// Takes (or re-takes) the lock for thread `me`. `None` on timeout.
    pub(crate) fn acquire<P: Park>(&self, me: u32, deadline: Option<Deadline>) -> Option<Taken> {
        if self.lock.holder() == me {
            let c = self.count.load(Relaxed);
            self.count.store(c.saturating_add(1), Relaxed);
            return Some(Taken::Clean);
        }
        let taken = self.lock.lock::<P>(me, deadline)?;
        self.count.store(1, Relaxed);
        Some(taken)
    }

    pub(crate) fn try_acquire(&self, me: u32) -> Option<Taken> {
        if self.lock.holder() == me {
            let c = self.count.load(Relaxed);
            self.count.store(c.saturating_add(1), Relaxed);
            return Some(Taken::Clean);
        }
        let taken = self.lock.try_take(me)?;
        self.count.store(1, Relaxed);
        Some(taken)
    }

    /// Re-entry, or a take of a free lock with one compare-and-swap; false
    /// otherwise (held elsewhere, or free but inconsistent).
    #[inline]
    pub(crate) fn try_acquire_clean(&self, me: u32) -> bool {
        if self.lock.holder() == me {
            let c = self.count.load(Relaxed);
            self.count.store(c.saturating_add(1), Relaxed);
            return true;
        }
        if !self.lock.try_lock(me) {
            return false;
        }
        self.count.store(1, Relaxed);
        true
    }

    /// Releases every level, leaving the lock free but inconsistent.
    pub(crate) fn release_poisoned<P: Park>(&self) {
        self.count.store(0, Relaxed);
        self.lock.unlock_poisoned::<P>();
    }

    pub(crate) fn release<P: Park>(&self, me: u32) -> Result<(), SyncError> {
        let holder = self.lock.holder();
        if holder != me {
            return Err(not_owner(holder, me));
        }
        let c = self.count.load(Relaxed);
        if c > 1 {
            self.count.store(c - 1, Relaxed);
        } else {
            self.count.store(0, Relaxed);
            self.lock.unlock::<P>();
        }
        Ok(())
    }

    /// Releases every level at once (for `Condition::wait`); returns the depth.
    pub(crate) fn release_all<P: Park>(&self, me: u32) -> Result<u32, SyncError> {
        let holder = self.lock.holder();
        if holder != me {
            return Err(not_owner(holder, me));
        }
        let depth = self.count.swap(0, Relaxed).max(1);
        self.lock.unlock::<P>();
        Ok(depth)
    }

    /// Takes the lock back at `depth` (after `Condition::wait`).
    pub(crate) fn reacquire<P: Park>(&self, me: u32, depth: u32) -> Taken {
        let taken = self.lock.lock::<P>(me, None).unwrap_or(Taken::Clean);
        self.count.store(depth, Relaxed);
        taken
    }

    pub(crate) fn holder(&self) -> u32 {
        self.lock.holder()
    }

    pub(crate) fn depth(&self) -> u32 {
        self.count.load(Relaxed)
    }

    pub(crate) fn raw(&self) -> &RawLock {
        &self.lock
    }
}

/// A recursive lock in shared memory (Python's `multiprocessing.RLock`):
/// the thread holding it may acquire it again; each guard releases one level.
///
/// Owner-died rules as for [`Lock`](crate::Lock).
///
/// # Examples
///
/// ```
/// let r = shmproc_sync::RLock::new()?;
/// let a = r.acquire()?;
/// let b = r.acquire()?; // the holder may re-enter
/// assert_eq!(r.depth(), 2);
/// drop((b, a));
/// assert!(!r.is_owned());
/// # Ok::<(), shmproc_core::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    shared: Shared<RawRLock>,
}

#[cfg(not(loom))]
impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("holder", &self.shared.get().raw().holder_task())
            .field("depth", &self.depth())
            .finish()
    }
}

// Guards belong to the thread that holds the lock: not Send.
#[cfg(not(loom))]
lock_api!(RLock, RLockGuard, *const (), "recursive lock (one level)");

crate::shared::shared_constructors!(RLock, "free recursive lock");

#[cfg(not(loom))]
impl RLock {
    pub(crate) fn raw(&self) -> &RawRLock {
        self.shared.get()
    }

    #[inline]
    fn me() -> u32 {
        Futex::thread_id()
    }

    fn word(&self) -> &RawLock {
        self.raw().raw()
    }

    #[inline]
    fn take(&self, me: u32, deadline: Option<Deadline>) -> Option<Taken> {
        self.raw().acquire::<Futex>(me, deadline)
    }

    /// Re-entry, or the uncontended take: clean only.
    #[inline]
    fn take_fast(&self, me: u32) -> bool {
        self.raw().try_acquire_clean(me)
    }

    #[inline]
    fn try_take(&self, me: u32) -> Option<Taken> {
        self.raw().try_acquire(me)
    }

    #[inline]
    fn unlock_level(&self) {
        let _ = self.raw().release::<Futex>(Self::me());
    }

    fn unlock_poisoned(&self) {
        self.raw().release_poisoned::<Futex>();
    }

    /// Whether the calling thread holds it.
    pub fn is_owned(&self) -> bool {
        self.raw().holder() == Futex::thread_id()
    }

    /// Recursion depth of the current holder (0 when free).
    pub fn depth(&self) -> u32 {
        self.raw().depth()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn recursion_and_ownership() {
        let r = RLock::new().expect("create");
        let a = r.acquire().expect("free");
        let b = r.try_acquire().expect("ours: re-entered");
        assert_eq!(r.depth(), 2);
        let other = {
            let r = r.clone();
            std::thread::spawn(move || matches!(r.try_acquire(), Err(TryAcquireError::WouldBlock)))
        };
        assert!(other.join().expect("thread"), "another thread must not get it");
        drop(b);
        assert_eq!(r.depth(), 1);
        drop(a);
        assert!(!r.is_owned() && r.depth() == 0);
        assert!(matches!(
            r.raw().release::<Futex>(Futex::thread_id()),
            Err(SyncError::NotOwner { holder: 0, .. })
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn a_word_naming_a_live_thread_that_never_took_it_is_taken_over() {
        use crate::lock::WAITERS;
        use crate::lock::tests::ids_of;
        // A live thread that never takes the lock.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let bystander = std::thread::spawn(move || {
            tid_tx.send(shmproc_core::sys::cached_tid()).expect("send tid");
            let _ = stop_rx.recv();
        });
        let tid = tid_rx.recv().expect("the thread's tid");
        let (right, wrong) = ids_of(tid);
        for (word, what) in [(tid, "a bare tid"), (wrong | WAITERS, "a tid with another start tag")] {
            let r = RLock::new().expect("create");
            r.raw().raw().scribble(word);
            match r.acquire_timeout(crate::park::LIVENESS_SLICE * 100) {
                Err(AcquireTimeoutError::OwnerDied(e)) => {
                    assert_eq!(e.pid, crate::park::task_of(word), "{what}");
                    assert!(
                        r.is_inconsistent() && r.depth() == 0 && !r.is_owned(),
                        "{what}: released"
                    );
                }
                other => panic!("{what}: {:?}", other.map(drop)),
            }
        }
        let r = RLock::new().expect("create");
        r.raw().raw().scribble(right);
        assert!(
            matches!(
                r.acquire_timeout(crate::park::LIVENESS_SLICE * 3),
                Err(AcquireTimeoutError::Timeout(_))
            ),
            "the word that thread would write is a live holder"
        );
        drop(stop_tx);
        bystander.join().expect("thread");
    }

    #[test]
    fn a_dead_thread_holder_is_taken_over_and_recovered() {
        let r = RLock::new().expect("create");
        let t = {
            let r = r.clone();
            std::thread::spawn(move || {
                let g = r.acquire().expect("free");
                std::mem::forget(g);
            })
        };
        t.join().expect("thread");
        assert!(r.acquire().is_err(), "the holder thread ended while holding");
        assert!(r.try_acquire().is_err(), "still inconsistent");
        {
            let g = r.recover();
            assert_eq!(r.depth(), 1);
            g.mark_consistent();
        }
        drop(r.acquire().expect("consistent again"));
    }
}
