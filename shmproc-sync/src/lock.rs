//! `Lock`: a mutual-exclusion lock in shared memory that survives the death
//! of its holder.
//!
//! # Algorithm
//!
//! std's futex mutex (`library/std/src/sys/sync/mutex/futex.rs`), with the
//! holder's *owner id* in the word instead of a plain 1:
//!
//! | `state`             | meaning                                        |
//! |---------------------|------------------------------------------------|
//! | `0`                 | unlocked                                       |
//! | `id`                | held by owner `id`, nobody sleeps              |
//! | `id \| WAITERS`     | held by `id`, someone may sleep on the word    |
//! | `POISONED`          | free, but a holder died: see "Owner died"      |
//!
//! Locking is one compare-and-swap `0 -> id`; unlocking one swap to `0`,
//! plus a futex wake only when `WAITERS` was set. A waiter spins briefly,
//! then sets `WAITERS` and sleeps in slices of [`LIVENESS_SLICE`](crate::park::LIVENESS_SLICE); after
//! each slice it checks that the holder still runs, and if not takes the
//! lock over with one compare-and-swap from the exact word it judged, so
//! two survivors never both win.
//!
//! # Owner died
//!
//! The taker records the dead holder's id in the `inconsistent` word and
//! releases the lock into the *poisoned* state: `state` holds the owner
//! field [`POISONED`] (task 0, a tag of all ones: no process), so it is free
//! but the fast path's `0 -> id` fails on it and costs nothing more. A slow
//! path that finds it takes it (one compare-and-swap, as a free lock), and
//! the handle releases it poisoned again and returns [`OwnerDied`] with the
//! recorded pid: every acquirer hears it. [`Lock::recover`] takes it the
//! same way but keeps it; its guard's `mark_consistent` clears the word,
//! after which the guard's drop is a plain unlock (unmarked, it releases
//! poisoned again). Sleepers are all woken by a poisoned release, since
//! each must hear the error.
//!
//! # Owner identity
//!
//! A pid alone does not name a process: pids are reused, and a scribbled
//! word can name any live process, which would then look like a holder that
//! never lets go. So an owner id is the pid (22 bits: Linux never hands out
//! a pid at or above `PID_MAX_LIMIT` = 2^22) with a 9-bit *start tag* above
//! it, a hash of the process's start time (field 22 of `/proc/<pid>/stat`)
//! that is never 0. The holder counts as alive only if a process with that
//! pid runs, is not a zombie, and its start time has that tag
//! (`park::owner_alive`). Each process computes its own id once.
//!
//! Why the tag sits in the lock word and not in a second word beside it:
//! the identity is then claimed by the same compare-and-swap that takes the
//! lock. With a second word written after the CAS, a waiter could find the
//! pid of a fresh holder next to a start time not yet written (or the last
//! holder's), and could not tell that holder from garbage without a grace
//! period, during which a legitimate holder stopped (SIGSTOP, a debugger,
//! a throttled cgroup) between the two stores would be robbed. In one word
//! there is no such window, no grace period, and the uncontended path is
//! still one CAS to lock and one swap to unlock.
//!
//! What the checks give:
//!
//! - a holder that died (SIGKILL at any instruction, a zombie included) is
//!   taken over within a slice, as before;
//! - a word naming a task that does not exist, pid 0 with WAITERS, or any
//!   word with tag 0 (a bare pid, as older builds wrote, or most garbage)
//!   is not a holder: the next blocking acquirer takes it over within a
//!   slice, with `OwnerDied`;
//! - a word naming a *live* process (ours included) with the wrong tag is
//!   not a holder either: taken over the same way;
//! - a reused pid is taken for the dead holder only if the new process's
//!   start time has the same tag: 1 chance in 511 on top of the reuse itself
//!   (which needs the whole pid space to wrap while the lock stays held by
//!   a dead process); a scribble names a live holder only with that same 1
//!   in 511 chance of the right tag. Those cases, and a scribble that copies
//!   a real holder's word, behave as a live holder: a timed acquire times
//!   out, an untimed one waits until that process ends.
//! - When `/proc` hides a process's start time (hidepid), its tag cannot be
//!   checked and a live pid counts as the holder, as a bare pid did before.
//!
//! Processes that share a lock must see the same pids and the same boot
//! clock: one pid namespace (pids already had to agree) and one time
//! namespace (`/proc` shows start times on the reader's boot clock; across
//! time namespaces a live holder's tag would not match and it would be
//! taken for dead).
//!
//! [`RLock`](crate::RLock) uses the same words with thread ids (and thread
//! start times) in place of pids; `/proc/<tid>/stat` holds a thread's own.
//!
//! # Memory ordering
//!
//! Acquire on every successful take pairs with the Release swap of
//! `unlock`: what the holder wrote is visible to the next holder. The
//! `WAITERS` flag and the liveness reads are Relaxed: they only decide who
//! sleeps or wakes, and the futex call orders itself against the word.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc_core::SegmentKind;
use shmproc_core::sys::{Deadline, FutexWait};

use crate::error::{AcquireTimeoutError, OwnerDied, TryAcquireError};
#[cfg(not(loom))]
use crate::park::Futex;
use crate::park::Park;
use crate::shared::{Shared, SharedState};
use crate::sync::AtomicU32;
use crate::sync::Ordering::{Acquire, Relaxed, Release};

/// Set in `state` when someone may sleep on it.
pub(crate) const WAITERS: u32 = 1 << 31;
/// The holder's owner id in `state` (task id and start tag, `park`).
pub(crate) const OWNER: u32 = !WAITERS;
/// The owner field of a lock that is free but inconsistent: task 0 (no
/// process has it) with a start tag of all ones. The fast path's
/// compare-and-swap from 0 fails on it, so the hot path pays nothing for
/// the check; the slow path hands it out as [`Taken::OwnerDied`].
pub(crate) const POISONED: u32 = (OWNER >> crate::park::TASK_BITS) << crate::park::TASK_BITS;

#[inline]
fn owner(state: u32) -> u32 {
    state & OWNER
}

#[inline]
fn has_waiters(state: u32) -> bool {
    state & WAITERS != 0
}

/// How a lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// From a holder that released it (or nobody).
    Clean,
    /// From a holder that died holding it.
    OwnerDied,
}

/// The words of a lock.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RawLock {
    state: AtomicU32,
    inconsistent: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<RawLock>() == 8);

// SAFETY: two AtomicU32 fields, repr(C), no padding; zero is "unlocked".
unsafe impl SharedState for RawLock {
    const KIND: SegmentKind = SegmentKind::LOCK;
}

impl RawLock {
    /// One attempt, no waiting: `0 -> me`.
    #[inline]
    pub(crate) fn try_lock(&self, me: u32) -> bool {
        debug_assert!(me != 0 && me & WAITERS == 0);
        // Acquire: pairs with the Release swap in `unlock`.
        self.state.compare_exchange(0, me, Acquire, Relaxed).is_ok()
    }

    /// Takes the lock for `me`, waiting until `deadline`. `None` on timeout.
    #[inline]
    pub(crate) fn lock<P: Park>(&self, me: u32, deadline: Option<Deadline>) -> Option<Taken> {
        if self.try_lock(me) {
            Some(Taken::Clean)
        } else {
            self.lock_contended::<P>(me, deadline)
        }
    }

    #[cold]
    fn lock_contended<P: Park>(&self, me: u32, deadline: Option<Deadline>) -> Option<Taken> {
        let mut state = self.spin();
        loop {
            if owner(state) == 0 {
                // Free. Keep WAITERS set: another sleeper may exist.
                // Acquire: pairs with the Release swap in `unlock`.
                match self.state.compare_exchange(state, me | WAITERS, Acquire, Relaxed) {
                    Ok(_) => return Some(Taken::Clean),
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if owner(state) == POISONED {
                // Free but inconsistent: taken, and reported as such.
                // Acquire: pairs with the Release swap in `unlock_poisoned`.
                match self.state.compare_exchange(state, me | WAITERS, Acquire, Relaxed) {
                    Ok(_) => return Some(Taken::OwnerDied),
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if P::passed(deadline) {
                return None;
            }
            if !has_waiters(state) {
                // Relaxed: only asks the holder to wake us; the futex call
                // re-reads the word.
                if let Err(s) = self.state.compare_exchange(state, state | WAITERS, Relaxed, Relaxed) {
                    state = s;
                    continue;
                }
                state |= WAITERS;
            }
            if P::wait(&self.state, state, P::slice(deadline)) == FutexWait::TimedOut
                && let Some(taken) = self.take_from_dead::<P>(state, me)
            {
                return Some(taken);
            }
            // Relaxed: a fresh look before deciding again.
            state = self.state.load(Relaxed);
        }
    }

    /// If the holder in `seen` is dead and the word still says `seen`,
    /// takes the lock over.
    fn take_from_dead<P: Park>(&self, seen: u32, me: u32) -> Option<Taken> {
        if self.state.load(Relaxed) != seen || owner(seen) == 0 || P::alive(owner(seen)) {
            return None;
        }
        // Acquire: pairs with whatever Release the dead holder managed; the
        // data may still be half-written, which OwnerDied says.
        self.state.compare_exchange(seen, me | WAITERS, Acquire, Relaxed).ok()?;
        // Relaxed: read only by the holder, or after an Acquire take. The
        // dead holder's id, never 0 (checked above), for `OwnerDied`.
        self.inconsistent.store(owner(seen), Relaxed);
        Some(Taken::OwnerDied)
    }

    fn spin(&self) -> u32 {
        let mut spins = crate::park::spins();
        loop {
            // Relaxed: we only look; a take re-checks with Acquire.
            let state = self.state.load(Relaxed);
            if owner(state) == 0 || has_waiters(state) || spins == 0 {
                return state;
            }
            core::hint::spin_loop();
            spins -= 1;
        }
    }

    /// Releases; false if the lock was not locked.
    #[inline]
    pub(crate) fn unlock<P: Park>(&self) -> bool {
        // Release: pairs with the Acquire of the next take.
        let state = self.state.swap(0, Release);
        if owner(state) == 0 {
            return false;
        }
        if has_waiters(state) {
            P::wake(&self.state, 1);
        }
        true
    }

    /// One attempt that also takes a free but inconsistent lock (reported as
    /// [`Taken::OwnerDied`]). `None` when someone holds it.
    #[inline]
    pub(crate) fn try_take(&self, me: u32) -> Option<Taken> {
        if self.try_lock(me) {
            return Some(Taken::Clean);
        }
        // Relaxed: a look; the take below is Acquire.
        let state = self.state.load(Relaxed);
        // Acquire: pairs with the Release swap in `unlock_poisoned`.
        (owner(state) == POISONED
            && self
                .state
                .compare_exchange(state, me | (state & WAITERS), Acquire, Relaxed)
                .is_ok())
        .then_some(Taken::OwnerDied)
    }

    /// Releases, leaving the lock free but inconsistent: every later
    /// acquirer gets `OwnerDied` until a recovered holder marks it
    /// consistent. Wakes every sleeper, each of which must hear it.
    #[cold]
    pub(crate) fn unlock_poisoned<P: Park>(&self) {
        // Release: pairs with the Acquire of the next take.
        let state = self.state.swap(POISONED, Release);
        if has_waiters(state) {
            P::wake(&self.state, u32::MAX);
        }
    }

    /// The task id of the holder that died (0 when unknown), for `OwnerDied`.
    pub(crate) fn dead_task(&self) -> u32 {
        // Relaxed: read by the holder; its Acquire take ordered it.
        crate::park::task_of(self.inconsistent.load(Relaxed))
    }

    /// If the lock's holder is dead, takes it over for `me` without waiting
    /// (the same compare-and-swap as a waiter whose slice ran out).
    pub(crate) fn take_if_holder_dead<P: Park>(&self, me: u32) -> bool {
        // Relaxed: a fresh look; the take re-checks with Acquire.
        let seen = self.state.load(Relaxed);
        self.take_from_dead::<P>(seen, me).is_some()
    }

    /// The holder's owner id (task id and start tag), 0 when unlocked
    /// (also when free but inconsistent).
    pub(crate) fn holder(&self) -> u32 {
        // Relaxed: a snapshot for display and checks.
        Some(owner(self.state.load(Relaxed)))
            .filter(|&o| o != POISONED)
            .unwrap_or(0)
    }

    /// The holder's task id (pid or tid), 0 when unlocked.
    pub(crate) fn holder_task(&self) -> u32 {
        crate::park::task_of(self.holder())
    }

    pub(crate) fn inconsistent(&self) -> bool {
        // Relaxed: a flag read by the holder; the lock's Acquire ordered it.
        self.inconsistent.load(Relaxed) != 0
    }

    pub(crate) fn mark_consistent(&self) {
        // Relaxed: written by the holder; the unlock's Release publishes it.
        self.inconsistent.store(0, Relaxed);
    }

    /// Overwrites the lock word, as a scribbling peer would.
    #[cfg(test)]
    pub(crate) fn scribble(&self, state: u32) {
        // Relaxed: a test's stand-in for a foreign write.
        self.state.store(state, Relaxed);
    }
}

/// A lock in shared memory (Python's `multiprocessing.Lock`).
///
/// Not recursive: the process holding it blocks if it acquires it again.
/// The guard releases it. If a holder dies holding it, the next acquirer
/// (within about [`LIVENESS_SLICE`](crate::park::LIVENESS_SLICE)) and every
/// one after it get [`OwnerDied`] until someone calls [`Lock::recover`] and
/// marks the guarded data consistent.
///
/// Clones are the same lock; so is a child's copy passed as an argument.
///
/// # Examples
///
/// ```
/// let lock = shmproc_sync::Lock::new()?;
/// {
///     let _guard = lock.acquire()?;
///     assert!(lock.is_locked());
///     assert!(lock.try_acquire().is_err());
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), shmproc_core::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    shared: Shared<RawLock>,
}

#[cfg(not(loom))]
impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("holder", &self.raw().holder_task())
            .finish()
    }
}

#[cfg(not(loom))]
lock_api!(Lock, LockGuard, (), "lock");

crate::shared::shared_constructors!(Lock, "unlocked lock");

#[cfg(not(loom))]
impl Lock {
    pub(crate) fn raw(&self) -> &RawLock {
        self.shared.get()
    }

    #[inline]
    fn me() -> u32 {
        Futex::process_id()
    }

    fn word(&self) -> &RawLock {
        self.raw()
    }

    #[inline]
    fn take(&self, me: u32, deadline: Option<Deadline>) -> Option<Taken> {
        self.raw().lock::<Futex>(me, deadline)
    }

    /// The uncontended take: one compare-and-swap `0 -> me`.
    #[inline]
    fn take_fast(&self, me: u32) -> bool {
        self.raw().try_lock(me)
    }

    #[inline]
    fn try_take(&self, me: u32) -> Option<Taken> {
        self.raw().try_take(me)
    }

    #[inline]
    fn unlock_level(&self) {
        self.raw().unlock::<Futex>();
    }

    fn unlock_poisoned(&self) {
        self.raw().unlock_poisoned::<Futex>();
    }

    /// Whether someone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.raw().holder() != 0
    }

    /// The pid of the holder, if held.
    pub fn holder(&self) -> Option<u32> {
        Some(self.raw().holder_task()).filter(|&h| h != 0)
    }
}

#[cfg(all(test, not(loom)))]
#[path = "lock_tests.rs"]
pub(crate) mod tests;

/// A [`Lock`]'s two words, to embed in a shared layout of one's own (the
/// queues put theirs beside their rings).
///
/// All-zero bytes are an unlocked lock; any bits are safe to hand it (a
/// nonsense holder reads as a dead one and is taken over). Owners are
/// process ids with a start tag, as for [`Lock`].
///
/// Under loom it is built too, on the model's park (`park::Spin`:
/// each modelled thread a process of its own), so that the queues' loom
/// models run their real locking.
#[repr(transparent)]
#[derive(Default)]
pub struct ProcessLock(RawLock);

/// The park of a [`ProcessLock`]: futexes, or loom's stand-in.
#[cfg(not(loom))]
type ProcessPark = Futex;
#[cfg(loom)]
type ProcessPark = crate::park::Spin;

impl fmt::Debug for ProcessLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLock")
            .field("holder", &self.0.holder_task())
            .finish()
    }
}

impl ProcessLock {
    /// This process's id in the lock word (under loom: the modelled
    /// thread's, each thread standing for a process).
    #[inline]
    fn me() -> u32 {
        #[cfg(not(loom))]
        return ProcessPark::process_id();
        #[cfg(loom)]
        return ProcessPark::thread_id();
    }

    /// Takes the lock for this process, waiting until `deadline` (forever
    /// with `None`). `None` on timeout; `Some(true)` when it was taken from
    /// a holder that died holding it.
    #[inline]
    pub fn lock_until(&self, deadline: Option<Deadline>) -> Option<bool> {
        self.0
            .lock::<ProcessPark>(Self::me(), deadline)
            .map(|taken| taken == Taken::OwnerDied)
    }

    /// Takes the lock if it is free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.0.try_lock(Self::me())
    }

    /// Takes the lock over if its holder died; true when taken.
    pub fn take_if_holder_dead(&self) -> bool {
        self.0.take_if_holder_dead::<ProcessPark>(Self::me())
    }

    /// Releases it; false when it was not locked.
    #[inline]
    pub fn unlock(&self) -> bool {
        self.0.unlock::<ProcessPark>()
    }

    /// The pid of the holding process, if any (it may be dead, or a word
    /// no holder wrote; [`ProcessLock::take_if_holder_dead`] checks).
    pub fn holder(&self) -> Option<u32> {
        Some(self.0.holder_task()).filter(|&p| p != 0)
    }
}
