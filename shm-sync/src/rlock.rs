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
use shm_core::sys::Deadline;
use shm_core::{SegmentError, SegmentKind};

use crate::error::{LockResult, OwnerDied, SyncError, TryLockError, TryLockResult};
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

    pub(crate) fn try_acquire(&self, me: u32) -> bool {
        if self.lock.holder() == me {
            let c = self.count.load(Relaxed);
            self.count.store(c.saturating_add(1), Relaxed);
            return true;
        }
        if self.lock.try_lock(me) {
            self.count.store(1, Relaxed);
            true
        } else {
            false
        }
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

/// A recursive lock in shared memory.
///
/// # Examples
///
/// ```
/// let r = shm_sync::RLock::new()?;
/// let a = r.lock().expect("free");
/// let b = r.lock().expect("the holder may re-enter");
/// assert_eq!(r.depth(), 2);
/// drop((b, a));
/// assert!(r.release().is_err(), "not held");
/// # Ok::<(), shm_core::SegmentError>(())
/// ```
#[cfg(not(loom))]
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    shared: Shared<RawRLock>,
}

/// Holds one level of an [`RLock`] until dropped.
#[cfg(not(loom))]
#[must_use = "the level is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    // Guards belong to the thread that holds the lock.
    _not_send: std::marker::PhantomData<*const ()>,
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

#[cfg(not(loom))]
impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}

#[cfg(not(loom))]
impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.shared.get().release::<Futex>(Futex::thread_id());
    }
}

#[cfg(not(loom))]
impl RLock {
    /// A new, free recursive lock in its own shared segment.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made.
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::create()?,
        })
    }

    pub(crate) fn raw(&self) -> &RawRLock {
        self.shared.get()
    }

    fn guard(&self, taken: Taken) -> LockResult<RLockGuard<'_>> {
        let guard = RLockGuard {
            lock: self,
            _not_send: std::marker::PhantomData,
        };
        match taken {
            Taken::Clean => Ok(guard),
            Taken::OwnerDied => Err(OwnerDied::new(guard)),
        }
    }

    /// Takes one level, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (with the guard) when the previous holder died holding it.
    ///
    /// # Panics
    ///
    /// Never: without a deadline the wait ends only with the lock held.
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        let taken = self
            .raw()
            .acquire::<Futex>(Futex::thread_id(), None)
            .expect("no deadline");
        self.guard(taken)
    }

    /// Takes one level if the lock is free or already ours.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when another thread holds it.
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        if self.raw().try_acquire(Futex::thread_id()) {
            self.guard(Taken::Clean).map_err(TryLockError::OwnerDied)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Waits up to `timeout` for one level.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] on timeout, [`TryLockError::OwnerDied`]
    /// when the previous holder died holding it.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        match self
            .raw()
            .acquire::<Futex>(Futex::thread_id(), Some(Deadline::after(timeout)))
        {
            None => Err(TryLockError::WouldBlock),
            Some(taken) => self.guard(taken).map_err(TryLockError::OwnerDied),
        }
    }

    /// Python's `acquire(block, timeout)`; release with [`RLock::release`].
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when the lock **is now held** but its previous holder died.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, OwnerDied<()>> {
        let me = Futex::thread_id();
        if !block {
            return Ok(self.raw().try_acquire(me));
        }
        match self.raw().acquire::<Futex>(me, timeout.map(Deadline::after)) {
            None => Ok(false),
            Some(Taken::Clean) => Ok(true),
            Some(Taken::OwnerDied) => Err(OwnerDied::new(())),
        }
    }

    /// Python's `release()`: one level.
    ///
    /// # Errors
    ///
    /// [`SyncError::NotOwner`] when the calling thread does not hold it.
    pub fn release(&self) -> Result<(), SyncError> {
        self.raw().release::<Futex>(Futex::thread_id())
    }

    /// Whether the calling thread holds it.
    pub fn is_owned(&self) -> bool {
        self.raw().holder() == Futex::thread_id()
    }

    /// Recursion depth of the current holder (0 when free).
    pub fn depth(&self) -> u32 {
        self.raw().depth()
    }

    /// Whether it was taken over from a dead holder since the last
    /// [`RLock::mark_consistent`].
    pub fn is_inconsistent(&self) -> bool {
        self.raw().raw().inconsistent()
    }

    /// Declares the guarded data repaired.
    pub fn mark_consistent(&self) {
        self.raw().raw().mark_consistent();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn recursion_and_ownership() {
        let r = RLock::new().expect("create");
        assert_eq!(r.acquire(true, None).ok(), Some(true));
        assert_eq!(r.acquire(false, None).ok(), Some(true));
        assert_eq!(r.depth(), 2);
        let other = {
            let r = r.clone();
            std::thread::spawn(move || (r.acquire(false, None).ok(), r.release()))
        };
        let (got, release) = other.join().expect("thread");
        assert_eq!(got, Some(false));
        assert!(matches!(release, Err(SyncError::NotOwner { .. })));
        r.release().expect("level 2");
        r.release().expect("level 1");
        assert!(matches!(r.release(), Err(SyncError::NotOwner { holder: 0, .. })));
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
            tid_tx.send(shm_core::sys::cached_tid()).expect("send tid");
            let _ = stop_rx.recv();
        });
        let tid = tid_rx.recv().expect("the thread's tid");
        let (right, wrong) = ids_of(tid);
        for (word, what) in [(tid, "a bare tid"), (wrong | WAITERS, "a tid with another start tag")] {
            let r = RLock::new().expect("create");
            r.raw().raw().scribble(word);
            match r.lock_timeout(crate::park::LIVENESS_SLICE * 100) {
                Err(TryLockError::OwnerDied(e)) => assert_eq!(r.depth(), 1, "{what}: {e:?}"),
                other => panic!("{what}: {:?}", other.map(drop)),
            }
        }
        let r = RLock::new().expect("create");
        r.raw().raw().scribble(right);
        assert!(
            matches!(
                r.lock_timeout(crate::park::LIVENESS_SLICE * 3),
                Err(TryLockError::WouldBlock)
            ),
            "the word that thread would write is a live holder"
        );
        assert!(matches!(r.release(), Err(SyncError::NotOwner { holder, .. }) if holder == tid));
        drop(stop_tx);
        bystander.join().expect("thread");
    }

    #[test]
    fn a_dead_thread_holder_is_taken_over() {
        let r = RLock::new().expect("create");
        let t = {
            let r = r.clone();
            std::thread::spawn(move || {
                let g = r.lock().expect("free");
                std::mem::forget(g);
            })
        };
        t.join().expect("thread");
        let got = r.lock();
        assert!(got.is_err(), "the holder thread ended while holding");
        drop(got);
    }
}
