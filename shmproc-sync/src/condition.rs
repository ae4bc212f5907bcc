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
use shmproc_core::sys::{Deadline, FutexWait};
use shmproc_core::{SegmentError, SegmentKind};

use crate::error::{AcquireTimeoutError, ConditionError, OwnerDied, TryAcquireError};
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
use crate::{Lock, LockGuard, RLock, RLockGuard};

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
    pub(crate) fn register(&self, id: u32) -> Result<u32, ConditionError> {
        // Relaxed: ring indices change only under the condition's lock.
        let (head, tail) = (self.head.load(Relaxed), self.tail.load(Relaxed));
        if tail.wrapping_sub(head) as usize >= CAP {
            return Err(ConditionError::TooManyWaiters { max: MAX_WAITERS });
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
/// A condition variable in shared memory (Python's `Condition`): take its
/// lock with [`Condition::acquire`], then wait and notify on the guard.
///
/// # Examples
///
/// ```
/// let cond = shmproc_sync::Condition::new()?;
/// let mut guard = cond.acquire()?;
/// assert!(!guard.wait_timeout(std::time::Duration::from_millis(1))?);
/// assert_eq!(guard.notify_all(), 0);
/// # Ok::<(), shmproc_core::Error>(())
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
enum Held<'a> {
    RLock(RLockGuard<'a>),
    Lock(LockGuard<'a>),
}

/// Holds a [`Condition`]'s lock until dropped; waits and notifies.
#[cfg(not(loom))]
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    /// The lock's guard, or the error that took the lock from us in a wait.
    held: Result<Held<'a>, OwnerDied>,
}

#[cfg(not(loom))]
impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard")
            .field("held", &self.held.is_ok())
            .finish()
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

    /// A condition over a new [`RLock`], both named: the condition `name`,
    /// its lock `name.lock`; any process may [`Condition::open`] it.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if a name is taken or invalid.
    pub fn create_named(name: &str) -> Result<Self, SegmentError> {
        let lock = RLock::create_named(&format!("{name}.lock"))?;
        Ok(Self {
            shared: Shared::create_named(name)?,
            lock: Inner::RLock(lock),
        })
    }

    /// Opens the condition named `name` and its lock (types and headers checked).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if either is missing or holds another type.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::open(name)?,
            lock: Inner::RLock(RLock::open(&format!("{name}.lock"))?),
        })
    }

    fn guard<'a>(&'a self, held: Held<'a>) -> ConditionGuard<'a> {
        ConditionGuard {
            cond: self,
            held: Ok(held),
        }
    }

    /// Takes the lock, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], as the lock's `acquire`.
    pub fn acquire(&self) -> Result<ConditionGuard<'_>, OwnerDied> {
        Ok(self.guard(match &self.lock {
            Inner::RLock(l) => Held::RLock(l.acquire()?),
            Inner::Lock(l) => Held::Lock(l.acquire()?),
        }))
    }

    /// Takes the lock if that needs no waiting.
    ///
    /// # Errors
    ///
    /// As the lock's `try_acquire`.
    pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, TryAcquireError> {
        Ok(self.guard(match &self.lock {
            Inner::RLock(l) => Held::RLock(l.try_acquire()?),
            Inner::Lock(l) => Held::Lock(l.try_acquire()?),
        }))
    }

    /// Waits up to `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// As the lock's `acquire_timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>, AcquireTimeoutError> {
        Ok(self.guard(match &self.lock {
            Inner::RLock(l) => Held::RLock(l.acquire_timeout(timeout)?),
            Inner::Lock(l) => Held::Lock(l.acquire_timeout(timeout)?),
        }))
    }

    /// Takes the lock whatever its state, as the lock's `recover`: mark the
    /// guarded data repaired with [`ConditionGuard::mark_consistent`].
    pub fn recover(&self) -> ConditionGuard<'_> {
        self.guard(match &self.lock {
            Inner::RLock(l) => Held::RLock(l.recover()),
            Inner::Lock(l) => Held::Lock(l.recover()),
        })
    }

    /// Whether its lock's holder died holding it and nobody has marked it
    /// consistent since.
    pub fn is_inconsistent(&self) -> bool {
        match &self.lock {
            Inner::RLock(l) => l.is_inconsistent(),
            Inner::Lock(l) => l.is_inconsistent(),
        }
    }

    /// How many wait now.
    pub fn waiting(&self) -> u32 {
        self.shared.get().waiting()
    }
}

#[cfg(not(loom))]
impl ConditionGuard<'_> {
    /// Releases the lock, waits until notified, and takes the lock back.
    ///
    /// # Errors
    ///
    /// [`ConditionError::TooManyWaiters`]; [`ConditionError::OwnerDied`]
    /// when taking the lock back found its holder dead: the guard does not
    /// hold the lock any more then, and every later wait says so again.
    pub fn wait(&mut self) -> Result<(), ConditionError> {
        self.wait_until(None).map(drop)
    }

    /// As [`ConditionGuard::wait`], giving up after `timeout`: returns
    /// whether it was notified (the lock is held again either way).
    ///
    /// # Errors
    ///
    /// As [`ConditionGuard::wait`].
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, ConditionError> {
        self.wait_until(Some(Deadline::after(timeout)))
    }

    /// Waits until `predicate()` (called with the lock held) is true.
    ///
    /// # Errors
    ///
    /// As [`ConditionGuard::wait`].
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool) -> Result<(), ConditionError> {
        while !predicate() {
            self.wait_until(None)?;
        }
        Ok(())
    }

    /// Waits until `predicate()` is true or `timeout` passes; returns the
    /// predicate's last value (Python's `wait_for`).
    ///
    /// # Errors
    ///
    /// As [`ConditionGuard::wait`].
    pub fn wait_for_timeout(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, ConditionError> {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.has_passed() {
                return Ok(false);
            }
            self.wait_until(Some(deadline))?;
        }
    }

    fn wait_until(&mut self, deadline: Option<Deadline>) -> Result<bool, ConditionError> {
        let raw = self.cond.shared.get();
        let (taken, notified) = match &self.held {
            Err(e) => return Err((*e).into()),
            Ok(Held::RLock(g)) => {
                let (lock, me) = (g.lock.raw(), Futex::thread_id());
                let ticket = raw.register(me)?;
                let Ok(depth) = lock.release_all::<Futex>(me) else {
                    // The word no longer names us (scribbled): nothing to wait under.
                    return Ok(raw.finish(ticket));
                };
                raw.sleep::<Futex>(ticket, deadline);
                let taken = lock.reacquire::<Futex>(me, depth);
                (taken, raw.finish(ticket))
            }
            Ok(Held::Lock(g)) => {
                let (lock, me) = (g.lock.raw(), Futex::process_id());
                let ticket = raw.register(me)?;
                lock.unlock::<Futex>();
                raw.sleep::<Futex>(ticket, deadline);
                let taken = lock.lock::<Futex>(me, None).unwrap_or(Taken::Clean);
                (taken, raw.finish(ticket))
            }
        };
        if taken == Taken::OwnerDied {
            let e = match std::mem::replace(&mut self.held, Err(OwnerDied { pid: 0 })) {
                Ok(Held::RLock(g)) => {
                    let lock = g.lock.raw();
                    std::mem::forget(g);
                    let pid = lock.raw().dead_task();
                    lock.release_poisoned::<Futex>();
                    OwnerDied { pid }
                }
                Ok(Held::Lock(g)) => {
                    let lock = g.lock.raw();
                    std::mem::forget(g);
                    let pid = lock.dead_task();
                    lock.unlock_poisoned::<Futex>();
                    OwnerDied { pid }
                }
                Err(e) => e,
            };
            self.held = Err(e);
            return Err(e.into());
        }
        Ok(notified)
    }

    /// Python's `release()`: releases the lock now (as dropping the guard
    /// does).
    pub fn release(self) {
        drop(self);
    }

    /// Declares the data the lock guards repaired (on the guard of
    /// [`Condition::recover`]; see the lock's `mark_consistent`).
    pub fn mark_consistent(&self) {
        match &self.held {
            Ok(Held::RLock(g)) => g.mark_consistent(),
            Ok(Held::Lock(g)) => g.mark_consistent(),
            Err(_) => {}
        }
    }

    /// Wakes up to `n` waiters. Returns how many.
    pub fn notify(&self, n: u32) -> u32 {
        if self.held.is_err() {
            return 0;
        }
        self.cond.shared.get().notify::<Futex>(n)
    }

    /// Wakes every waiter. Returns how many.
    pub fn notify_all(&self) -> u32 {
        self.notify(u32::MAX)
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
                    let mut g = cond.acquire().expect("lock");
                    let got = g.wait_timeout(Duration::from_secs(60)).expect("wait");
                    *woken.lock().expect("m") += 1;
                    got
                })
            })
            .collect();
        bounded_wait("5 waiters", || cond.waiting() == 5);
        assert_eq!(cond.acquire().expect("lock").notify(2), 2);
        bounded_wait("2 woken threads", || *woken.lock().expect("m") >= 2);
        assert_eq!(cond.waiting(), 3, "exactly two left");
        assert_eq!(cond.acquire().expect("lock").notify_all(), 3);
        assert!(threads.into_iter().all(|t| t.join().expect("thread")));
    }

    #[test]
    fn damaged_ring_indices_give_errors_not_endless_loops() {
        let cond = Condition::new().expect("create");
        cond.shared.get().tail.store(u32::MAX / 2, Relaxed);
        let mut g = cond.acquire().expect("lock");
        assert_eq!(g.wait(), Err(ConditionError::TooManyWaiters { max: MAX_WAITERS }));
        assert_eq!(g.notify_all(), 0);
    }

    #[test]
    fn wait_for_over_a_plain_lock() {
        let cond = Condition::with_lock(Lock::new().expect("lock")).expect("create");
        let mut g = cond.acquire().expect("lock");
        g.wait_for(|| true).expect("true at once: no wait");
        assert_eq!(g.wait_for_timeout(|| true, Duration::ZERO), Ok(true));
        let got = g.wait_for_timeout(|| false, Duration::from_millis(5));
        assert_eq!(got, Ok(false));
        drop(g);
        assert!(cond.try_acquire().is_ok(), "the guard released the lock");
    }
}
