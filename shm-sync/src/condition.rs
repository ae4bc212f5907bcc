//! `Condition`: a condition variable over a shared [`RLock`] (the default)
//! or [`Lock`] (Python's `multiprocessing.Condition`).
//!
//! # Algorithm
//!
//! A ring of waiter slots in shared memory, one futex word each, managed
//! only while the condition's lock is held (Python requires the lock for
//! `wait` and `notify`, and so do we):
//!
//! | slot word            | meaning                                       |
//! |----------------------|-----------------------------------------------|
//! | `EMPTY`              | free                                          |
//! | `WAITING \| id`      | a waiter registered and may still be spinning |
//! | `SLEEPING \| id`     | the waiter sleeps on this word                |
//! | `NOTIFIED \| id`     | chosen by `notify`                            |
//!
//! `wait` takes the slot at `tail`, releases the lock, spins briefly, then
//! marks itself `SLEEPING` and sleeps on its own word until `NOTIFIED` or
//! its deadline; then it re-takes the lock, frees its slot and returns
//! whether it was notified. `notify(n)` walks from `head` and swaps
//! `NOTIFIED` into the first `n` waiting slots, making a wake call only for
//! those that sleep: exactly `n` waiters return true (fewer only if fewer
//! wait), and no wake-up is lost, because a waiter decides on its own word.
//! A waiter whose timeout races a notify still gets the notification.
//!
//! A process killed while waiting keeps its slot until a notify picks it,
//! and that notification is lost with it. At most [`MAX_WAITERS`] may wait
//! at once.
//!
//! # Memory ordering
//!
//! The ring indices are only touched under the lock (Relaxed; the lock
//! orders them). The swap to `NOTIFIED` is Release and the waiter's load
//! that sees it Acquire: the notifier's writes before `notify` are visible
//! to the waiter.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shm_core::sys::{Deadline, FutexWait};
use shm_core::{SegmentError, SegmentKind};

use crate::error::SyncError;
use crate::lock::Taken;
#[cfg(not(loom))]
use crate::park::Futex;
use crate::park::Park;
#[cfg(not(loom))]
use crate::shared::Shared;
use crate::shared::SharedState;
use crate::sync::AtomicU32;
use crate::sync::Ordering::{Acquire, Relaxed, Release};
#[cfg(not(loom))]
use crate::{Lock, RLock};

/// Most processes and threads that may wait on one condition at once.
pub const MAX_WAITERS: u32 = 1024;
const CAP: usize = if cfg!(loom) { 4 } else { MAX_WAITERS as usize };

const STATE: u32 = 3;
const EMPTY: u32 = 0;
const WAITING: u32 = 1;
const SLEEPING: u32 = 2;
const NOTIFIED: u32 = 3;

/// The words of a condition.
#[repr(C)]
pub(crate) struct RawCondition {
    head: AtomicU32,
    tail: AtomicU32,
    slots: [AtomicU32; CAP],
}

// SAFETY: AtomicU32 fields only, repr(C); zero is "nobody waits".
unsafe impl SharedState for RawCondition {
    const KIND: SegmentKind = SegmentKind::CONDITION;
}

impl RawCondition {
    /// A fresh condition on the heap (loom models).
    #[cfg(loom)]
    pub(crate) fn new_boxed() -> Box<Self> {
        Box::new(Self {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            slots: std::array::from_fn(|_| AtomicU32::new(0)),
        })
    }

    fn slot(&self, ticket: u32) -> &AtomicU32 {
        &self.slots[ticket as usize % CAP]
    }

    /// Registers a waiter (lock held). Returns its ticket.
    pub(crate) fn register(&self, id: u32) -> Result<u32, SyncError> {
        // Relaxed: ring indices change only under the condition's lock.
        let (head, tail) = (self.head.load(Relaxed), self.tail.load(Relaxed));
        if tail.wrapping_sub(head) as usize >= CAP {
            return Err(SyncError::TooManyWaiters { max: MAX_WAITERS });
        }
        self.slot(tail).store(WAITING | id << 2, Relaxed);
        self.tail.store(tail.wrapping_add(1), Relaxed);
        Ok(tail)
    }

    /// Waits (lock released) until notified or `deadline`.
    pub(crate) fn sleep<P: Park>(&self, ticket: u32, deadline: Option<Deadline>) -> bool {
        let slot = self.slot(ticket);
        for _ in 0..crate::park::spins() {
            // Acquire: pairs with the Release swap in `notify`.
            if slot.load(Acquire) & STATE == NOTIFIED {
                return true;
            }
            core::hint::spin_loop();
        }
        loop {
            // Acquire: pairs with the Release swap in `notify`.
            let word = slot.load(Acquire);
            match word & STATE {
                NOTIFIED => return true,
                WAITING => {
                    // Relaxed: tells `notify` to wake us; the futex re-reads.
                    let _ = slot.compare_exchange(word, (word & !STATE) | SLEEPING, Relaxed, Relaxed);
                    continue;
                }
                _ => {}
            }
            if P::passed(deadline) {
                return false;
            }
            if P::wait(slot, word, deadline) == FutexWait::TimedOut {
                return slot.load(Acquire) & STATE == NOTIFIED;
            }
        }
    }

    /// Frees the slot of a waiter that is back under the lock. Returns
    /// whether it had been notified.
    pub(crate) fn finish(&self, ticket: u32) -> bool {
        // Acquire: a notify that raced our timeout still counts.
        let notified = self.slot(ticket).swap(EMPTY, Acquire) & STATE == NOTIFIED;
        // Relaxed: under the lock. Reclaim the run of free slots at head.
        let tail = self.tail.load(Relaxed);
        let mut head = self.head.load(Relaxed);
        let mut steps = 0;
        while head != tail && steps < CAP && self.slot(head).load(Relaxed) == EMPTY {
            steps += 1;
            head = head.wrapping_add(1);
        }
        self.head.store(head, Relaxed);
        notified
    }

    /// Notifies up to `n` waiters (lock held); returns how many.
    pub(crate) fn notify<P: Park>(&self, n: u32) -> u32 {
        // Relaxed: ring indices and slot states are read under the lock.
        let (mut i, tail) = (self.head.load(Relaxed), self.tail.load(Relaxed));
        let mut done = 0;
        // At most CAP steps, whatever a damaged head/tail say.
        let mut steps = 0;
        while i != tail && done < n && steps < CAP {
            steps += 1;
            let slot = self.slot(i);
            let word = slot.load(Relaxed);
            if matches!(word & STATE, WAITING | SLEEPING) {
                // Release: pairs with the waiter's Acquire load.
                let old = slot.swap((word & !STATE) | NOTIFIED, Release);
                if old & STATE == SLEEPING {
                    P::wake(slot, 1);
                }
                done += 1;
            }
            i = i.wrapping_add(1);
        }
        done
    }

    fn waiting(&self) -> u32 {
        // Relaxed: a snapshot count.
        let (mut i, tail) = (self.head.load(Relaxed), self.tail.load(Relaxed));
        let mut n = 0;
        let mut steps = 0;
        while i != tail && steps < CAP {
            steps += 1;
            if matches!(self.slot(i).load(Relaxed) & STATE, WAITING | SLEEPING) {
                n += 1;
            }
            i = i.wrapping_add(1);
        }
        n
    }
}

#[cfg(not(loom))]
#[derive(Clone, Serialize, Deserialize)]
enum Inner {
    RLock(RLock),
    Lock(Lock),
}

#[cfg(not(loom))]
/// A condition variable in shared memory.
///
/// # Examples
///
/// ```
/// let cond = shm_sync::Condition::new()?;
/// cond.acquire(true, None).expect("free");
/// assert_eq!(cond.wait_timeout(std::time::Duration::from_millis(1)), Ok(false));
/// cond.notify_all().expect("held");
/// cond.release().expect("held");
/// assert!(cond.notify(1).is_err(), "notify needs the lock");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    shared: Shared<RawCondition>,
    lock: Inner,
}

#[cfg(not(loom))]
impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("waiting", &self.shared.get().waiting())
            .finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
impl Condition {
    /// A condition over a new [`RLock`].
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if a segment cannot be made.
    pub fn new() -> Result<Self, SegmentError> {
        Self::with_rlock(RLock::new()?)
    }

    /// A condition over the given recursive lock.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made.
    pub fn with_rlock(lock: RLock) -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::create()?,
            lock: Inner::RLock(lock),
        })
    }

    /// A condition over the given lock.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made.
    pub fn with_lock(lock: Lock) -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::create()?,
            lock: Inner::Lock(lock),
        })
    }

    /// Acquires the underlying lock (Python's `cond.acquire(block, timeout)`).
    ///
    /// # Errors
    ///
    /// [`crate::OwnerDied`] when the lock is now held but its holder died.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, crate::OwnerDied<()>> {
        match &self.lock {
            Inner::RLock(l) => l.acquire(block, timeout),
            Inner::Lock(l) => l.acquire(block, timeout),
        }
    }

    /// Releases the underlying lock.
    ///
    /// # Errors
    ///
    /// As the lock's `release`.
    pub fn release(&self) -> Result<(), SyncError> {
        match &self.lock {
            Inner::RLock(l) => l.release(),
            Inner::Lock(l) => l.release(),
        }
    }

    fn me(&self) -> u32 {
        match &self.lock {
            Inner::RLock(_) => Futex::thread_id(),
            Inner::Lock(_) => Futex::process_id(),
        }
    }

    fn check_held(&self, what: &'static str) -> Result<u32, SyncError> {
        let me = self.me();
        let holder = match &self.lock {
            Inner::RLock(l) => l.raw().holder(),
            Inner::Lock(l) => l.raw().holder(),
        };
        if holder == me {
            Ok(me)
        } else {
            Err(SyncError::LockNotHeld { what })
        }
    }

    /// Waits until notified (the lock must be held; it is released while
    /// waiting and held again on return). Returns true.
    ///
    /// # Errors
    ///
    /// [`SyncError::LockNotHeld`], [`SyncError::TooManyWaiters`],
    /// [`SyncError::LockOwnerDied`] (the lock is held again; its holder died).
    pub fn wait(&self) -> Result<bool, SyncError> {
        self.wait_until(None)
    }

    /// As [`Condition::wait`], giving up after `timeout`: returns false then.
    ///
    /// # Errors
    ///
    /// As [`Condition::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, SyncError> {
        self.wait_until(Some(Deadline::after(timeout)))
    }

    fn wait_until(&self, deadline: Option<Deadline>) -> Result<bool, SyncError> {
        let me = self.check_held("wait")?;
        let raw = self.shared.get();
        let ticket = raw.register(me)?;
        let taken = match &self.lock {
            Inner::RLock(l) => {
                let depth = l.raw().release_all::<Futex>(me)?;
                raw.sleep::<Futex>(ticket, deadline);
                l.raw().reacquire::<Futex>(me, depth)
            }
            Inner::Lock(l) => {
                l.release()?;
                raw.sleep::<Futex>(ticket, deadline);
                match l.acquire(true, None) {
                    Ok(_) => Taken::Clean,
                    Err(_) => Taken::OwnerDied,
                }
            }
        };
        let notified = raw.finish(ticket);
        match taken {
            Taken::Clean => Ok(notified),
            Taken::OwnerDied => Err(SyncError::LockOwnerDied),
        }
    }

    /// Waits until `predicate()` is true or `timeout` passes; returns the
    /// predicate's last value (Python's `wait_for`).
    ///
    /// # Errors
    ///
    /// As [`Condition::wait`].
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
        let deadline = timeout.map(Deadline::after);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Ok(false);
            }
            self.wait_until(deadline)?;
        }
    }

    /// Wakes up to `n` waiters (the lock must be held). Returns how many.
    ///
    /// # Errors
    ///
    /// [`SyncError::LockNotHeld`].
    pub fn notify(&self, n: u32) -> Result<u32, SyncError> {
        self.check_held("notify")?;
        Ok(self.shared.get().notify::<Futex>(n))
    }

    /// Wakes every waiter (the lock must be held). Returns how many.
    ///
    /// # Errors
    ///
    /// [`SyncError::LockNotHeld`].
    pub fn notify_all(&self) -> Result<u32, SyncError> {
        self.notify(u32::MAX)
    }

    /// How many wait now.
    pub fn waiting(&self) -> u32 {
        self.shared.get().waiting()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Yields until `cond` holds; panics after a bound that only a hang
    /// (a lost wake, a dead thread) reaches.
    fn bounded_wait(what: &str, mut cond: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(60), "gave up waiting for {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn notify_n_wakes_exactly_n_threads() {
        let cond = Condition::new().expect("create");
        let woken = std::sync::Arc::new(std::sync::Mutex::new(0));
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let (cond, woken) = (cond.clone(), std::sync::Arc::clone(&woken));
                std::thread::spawn(move || {
                    cond.acquire(true, None).expect("lock");
                    let got = cond.wait_timeout(Duration::from_secs(60)).expect("wait");
                    *woken.lock().expect("m") += 1;
                    cond.release().expect("held");
                    got
                })
            })
            .collect();
        bounded_wait("5 waiters", || cond.waiting() == 5);
        cond.acquire(true, None).expect("lock");
        assert_eq!(cond.notify(2), Ok(2));
        cond.release().expect("held");
        bounded_wait("2 woken threads", || *woken.lock().expect("m") >= 2);
        assert_eq!(cond.waiting(), 3, "exactly two left");
        cond.acquire(true, None).expect("lock");
        assert_eq!(cond.notify_all(), Ok(3));
        cond.release().expect("held");
        assert!(threads.into_iter().all(|t| t.join().expect("thread")));
    }

    #[test]
    fn damaged_ring_indices_give_errors_not_endless_loops() {
        let cond = Condition::new().expect("create");
        cond.shared.get().tail.store(u32::MAX / 2, Relaxed);
        cond.acquire(true, None).expect("lock");
        assert_eq!(cond.wait(), Err(SyncError::TooManyWaiters { max: MAX_WAITERS }));
        assert_eq!(cond.notify_all(), Ok(0));
        cond.release().expect("held");
    }

    #[test]
    fn wait_needs_the_lock() {
        let cond = Condition::with_lock(Lock::new().expect("lock")).expect("create");
        assert_eq!(cond.wait(), Err(SyncError::LockNotHeld { what: "wait" }));
        assert_eq!(cond.notify(1), Err(SyncError::LockNotHeld { what: "notify" }));
        cond.acquire(true, None).expect("lock");
        let mut calls = 0;
        let got = cond.wait_for(
            || {
                calls += 1;
                calls > 2
            },
            Some(Duration::from_millis(30)),
        );
        assert!(got.is_ok());
        cond.release().expect("held");
    }
}
