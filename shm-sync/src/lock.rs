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
use shm_core::sys::{Deadline, FutexWait};
use shm_core::{SegmentError, SegmentKind};

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

/// The public face every lock handle shares (`Lock`, `RLock`): the guard
/// type, `acquire`/`try_acquire`/`acquire_timeout`/`recover` and the
/// owner-died rules, written once. The handle provides `me()`, `word()`,
/// `take_fast(me)` (the uncontended take, clean only), `take(me, deadline)`,
/// `try_take(me)`, `unlock_level()` and `unlock_poisoned()`.
#[cfg(not(loom))]
macro_rules! lock_api {
    ($Lock:ident, $Guard:ident, $marker:ty, $what:literal) => {
        #[doc = concat!("Holds a [`", stringify!($Lock), "`] (one level) until dropped.")]
        #[must_use = "the lock is released when the guard is dropped"]
        pub struct $Guard<'a> {
            pub(crate) lock: &'a $Lock,
            /// From `recover`: dropped unmarked, the lock stays inconsistent.
            recovering: bool,
            _marker: std::marker::PhantomData<$marker>,
        }

        impl fmt::Debug for $Guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($Guard))
                    .field("recovering", &self.recovering)
                    .finish()
            }
        }

        impl Drop for $Guard<'_> {
            #[inline]
            fn drop(&mut self) {
                if self.recovering && self.lock.word().inconsistent() {
                    self.lock.unlock_poisoned();
                } else {
                    self.lock.unlock_level();
                }
            }
        }

        impl $Guard<'_> {
            /// Declares the data the lock guards repaired: after this guard
            /// drops, acquires succeed again. Call it on the guard of
            #[doc = concat!("[`", stringify!($Lock), "::recover`]; on any other guard it does nothing harmful.")]
            pub fn mark_consistent(&self) {
                self.lock.word().mark_consistent();
            }
        }

        impl $Lock {
            #[inline]
            fn guard(&self, recovering: bool) -> $Guard<'_> {
                $Guard {
                    lock: self,
                    recovering,
                    _marker: std::marker::PhantomData,
                }
            }

            /// The guard for a take, or the lock released again (left
            /// inconsistent) with the error when its holder had died.
            fn taken(&self, taken: Taken) -> Result<$Guard<'_>, OwnerDied> {
                match taken {
                    Taken::Clean => Ok(self.guard(false)),
                    Taken::OwnerDied => Err(self.poison()),
                }
            }

            #[cold]
            fn poison(&self) -> OwnerDied {
                let pid = self.word().dead_task();
                self.unlock_poisoned();
                OwnerDied { pid }
            }

            #[doc = concat!("Blocks until the ", $what, " is held.")]
            ///
            /// # Errors
            ///
            /// [`OwnerDied`] when its holder died holding it, or it was left
            /// inconsistent since: the lock is **not** held then, and every
            /// acquire fails the same way until someone calls
            #[doc = concat!("[`", stringify!($Lock), "::recover`] and marks it consistent.")]
            #[inline]
            pub fn acquire(&self) -> Result<$Guard<'_>, OwnerDied> {
                let me = Self::me();
                if self.take_fast(me) {
                    return Ok(self.guard(false));
                }
                self.acquire_slow(me)
            }

            #[cold]
            fn acquire_slow(&self, me: u32) -> Result<$Guard<'_>, OwnerDied> {
                // Without a deadline the wait ends only with the lock held.
                let taken = self.take(me, None).unwrap_or(Taken::Clean);
                self.taken(taken)
            }

            #[doc = concat!("Takes the ", $what, " if that needs no waiting.")]
            ///
            /// # Errors
            ///
            /// [`TryAcquireError::WouldBlock`] when someone holds it (a dead
            /// holder too: only waiting acquirers check liveness),
            /// [`TryAcquireError::OwnerDied`] when it was left inconsistent.
            #[inline]
            pub fn try_acquire(&self) -> Result<$Guard<'_>, TryAcquireError> {
                match self.try_take(Self::me()) {
                    None => Err(TryAcquireError::WouldBlock),
                    Some(taken) => Ok(self.taken(taken)?),
                }
            }

            #[doc = concat!("Waits up to `timeout` for the ", $what, ".")]
            ///
            /// # Errors
            ///
            /// [`AcquireTimeoutError::Timeout`] when it is still held then,
            /// [`AcquireTimeoutError::OwnerDied`] as for `acquire`.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<$Guard<'_>, AcquireTimeoutError> {
                match self.take(Self::me(), Some(Deadline::after(timeout))) {
                    None => Err(AcquireTimeoutError::Timeout(timeout)),
                    Some(taken) => Ok(self.taken(taken)?),
                }
            }

            #[doc = concat!("Takes the ", $what, " whatever its state (blocking), to repair what it guards:")]
            /// call [`mark_consistent`](Self::is_inconsistent) on the guard
            /// before dropping it, or the lock stays inconsistent and every
            /// acquire keeps failing with [`OwnerDied`].
            pub fn recover(&self) -> $Guard<'_> {
                // A take from a dead holder marks it inconsistent; the guard
                // decides at drop.
                let _ = self.take(Self::me(), None);
                self.guard(true)
            }

            /// Whether a holder died holding it and nobody has marked it
            /// consistent since: the data it guards may be half-updated.
            pub fn is_inconsistent(&self) -> bool {
                self.word().inconsistent()
            }
        }
    };
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
/// let lock = shm_sync::Lock::new()?;
/// {
///     let _guard = lock.acquire()?;
///     assert!(lock.is_locked());
///     assert!(lock.try_acquire().is_err());
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), shm_core::Error>(())
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

#[cfg(not(loom))]
impl Lock {
    /// A new, unlocked lock in its own shared segment.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made.
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::create()?,
        })
    }

    /// A new, unlocked lock in a segment named `name`, which any process
    /// may [`Lock::open`].
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the name is taken or invalid.
    pub fn create_named(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::create_named(name)?,
        })
    }

    /// Opens the lock named `name` (type and header checked).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if there is none, or it holds another type.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Shared::open(name)?,
        })
    }

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
pub(crate) mod tests {
    use super::*;
    use crate::park::LIVENESS_SLICE;

    #[test]
    fn acquire_try_and_timeout() {
        let lock = Lock::new().expect("create");
        assert!(!lock.is_locked());
        let g = lock.acquire().expect("free");
        assert_eq!(lock.holder(), Some(std::process::id()));
        assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)));
        let d = Duration::from_millis(1);
        assert!(matches!(lock.acquire_timeout(d), Err(AcquireTimeoutError::Timeout(t)) if t == d));
        drop(g);
        assert!(!lock.is_locked());
        drop(lock.try_acquire().expect("free again"));
    }

    #[test]
    fn a_dead_holder_is_reported_to_every_acquirer_until_recovered() {
        let lock = Lock::new().expect("create");
        // A holder that does not exist (pid_max is far below this).
        lock.raw().state.store(0x3fff_fff0, Relaxed);
        let err = lock.acquire().expect_err("the holder is dead");
        assert_eq!(err.pid, task_of_word(0x3fff_fff0));
        assert!(
            lock.is_inconsistent() && !lock.is_locked(),
            "released, still inconsistent"
        );
        assert_eq!(lock.acquire().expect_err("again"), err);
        assert!(matches!(lock.try_acquire(), Err(TryAcquireError::OwnerDied(e)) if e == err));
        assert!(matches!(
            lock.acquire_timeout(LIVENESS_SLICE),
            Err(AcquireTimeoutError::OwnerDied(_))
        ));
        drop(lock.recover());
        assert!(
            lock.acquire().is_err(),
            "a recover guard dropped unmarked keeps it inconsistent"
        );
        {
            let g = lock.recover();
            assert!(lock.is_locked());
            g.mark_consistent();
        }
        assert!(!lock.is_inconsistent() && !lock.is_locked());
        drop(lock.acquire().expect("consistent again"));
        drop(lock.recover()); // on a healthy lock: a plain take and release
        drop(lock.acquire().expect("still consistent"));
    }

    fn task_of_word(word: u32) -> u32 {
        crate::park::task_of(word & OWNER)
    }

    #[test]
    fn garbage_is_recovered_by_a_timed_acquire() {
        let lock = Lock::new().expect("create");
        lock.raw().state.store(u32::MAX, Relaxed);
        assert!(matches!(
            lock.acquire_timeout(LIVENESS_SLICE * 3),
            Err(AcquireTimeoutError::OwnerDied(_))
        ));
    }

    /// The issue's snippet compiles: `OwnerDied` goes through `?` into
    /// `Box<dyn Error>` and into `shm_core::Error`.
    #[test]
    fn question_mark_works_into_boxed_and_library_errors() {
        use shm_core::RawValue;
        fn work((lock, n): (Lock, RawValue<u64>)) -> Result<(), Box<dyn std::error::Error>> {
            let _g = lock.acquire()?;
            n.set(n.get() + 1);
            Ok(())
        }
        fn work2((lock, n): (Lock, RawValue<u64>)) -> Result<(), shm_core::Error> {
            let _g = lock.acquire()?;
            n.set(n.get() + 1);
            Ok(())
        }
        let (lock, n) = (Lock::new().expect("lock"), RawValue::new(0u64).expect("value"));
        work((lock.clone(), n.clone())).expect("fine");
        work2((lock.clone(), n.clone())).expect("fine");
        assert_eq!(n.get(), 2);
        lock.raw().state.store(0x3fff_fff0, Relaxed);
        let e = work2((lock.clone(), n.clone())).expect_err("owner died");
        assert_eq!(e.kind(), shm_core::ErrorKind::OwnerDied);
        assert!(work((lock, n.clone())).is_err());
        assert_eq!(n.get(), 2, "no update under an inconsistent lock");
    }

    /// Runs this test binary again as an unrelated process that runs only
    /// the test `name`, with `SHM_SYNC_CHILD` set to `arg`.
    pub(crate) fn rerun(name: &str, arg: &str) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env("SHM_SYNC_CHILD", arg)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the test binary again")
    }

    /// In the re-run child only: takes the named lock and holds it until killed.
    #[test]
    fn child_takes_the_named_lock_and_hangs() {
        let Ok(name) = std::env::var("SHM_SYNC_CHILD") else {
            return;
        };
        let lock = Lock::open(&name).expect("the parent made it");
        std::mem::forget(lock.acquire().expect("free"));
        // Held until the parent kills us; bounded all the same.
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(3);
    }

    #[test]
    #[cfg_attr(miri, ignore = "starts a process, opens a named segment")]
    fn a_killed_holder_process_gives_owner_died_until_recovered() {
        let name = format!("shm-sync-test-ownerdied-{}", std::process::id());
        let lock = Lock::create_named(&name).expect("create");
        let mut child = rerun("lock::tests::child_takes_the_named_lock_and_hangs", &name);
        let pid = child.id();
        let start = std::time::Instant::now();
        while lock.holder() != Some(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the child never took the lock"
            );
            assert!(child.try_wait().expect("wait").is_none(), "the child ended early");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_eq!(lock.acquire().expect_err("the holder was killed"), OwnerDied { pid });
        assert_eq!(lock.acquire().expect_err("still inconsistent"), OwnerDied { pid });
        lock.recover().mark_consistent();
        drop(lock.acquire().expect("recovered"));
        shm_core::Segment::unlink(&name).expect("unlink");
    }

    /// A process that never takes any lock: `sleep`, killed on drop.
    pub(crate) struct Bystander(std::process::Child);

    impl Bystander {
        pub(crate) fn start() -> Self {
            Self(
                std::process::Command::new("sleep")
                    .arg("600")
                    .spawn()
                    .expect("start sleep"),
            )
        }

        pub(crate) fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Bystander {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The owner id `task` would write, and one with the wrong tag.
    pub(crate) fn ids_of(task: u32) -> (u32, u32) {
        let start = shm_core::sys::process_start_time(task).expect("a live task has a start time");
        let right = crate::park::owner_id(task, start);
        let mut wrong = right;
        let mut other = start;
        while wrong == right {
            other += 1;
            wrong = crate::park::owner_id(task, other);
        }
        (right, wrong)
    }

    /// A timed acquire of a lock whose word is `word` must end with the
    /// lock taken from a non-holder: `OwnerDied`, not a timeout.
    fn taken_over(word: u32, what: &str) {
        let lock = Lock::new().expect("create");
        lock.raw().scribble(word);
        // Generous: a non-holder is noticed after one slice; only a hang
        // (the bug) runs into this bound.
        match lock.acquire_timeout(LIVENESS_SLICE * 100) {
            Err(AcquireTimeoutError::OwnerDied(_)) => {}
            Ok(_) => panic!("{what}: taken as if free"),
            Err(AcquireTimeoutError::Timeout(_)) => panic!("{what}: {word:#x} was taken for a live holder"),
        }
        assert!(lock.is_inconsistent() && !lock.is_locked(), "{what}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "starts a process and reads /proc")]
    fn a_word_naming_a_live_process_that_never_took_it_is_taken_over() {
        let bystander = Bystander::start();
        let pid = bystander.pid();
        let (right, wrong) = ids_of(pid);
        taken_over(pid, "a bare live pid");
        taken_over(pid | WAITERS, "a bare live pid with waiters");
        taken_over(wrong, "a live pid with another start tag");
        taken_over(wrong | WAITERS, "the same with waiters");
        let me = std::process::id();
        taken_over(me, "our own bare pid");
        taken_over(ids_of(me).1, "our own pid with another start tag");
        taken_over(shm_core::sys::getppid(), "our parent's bare pid");
        let free = Lock::new().expect("create");
        free.raw().scribble(WAITERS);
        assert!(
            free.acquire_timeout(LIVENESS_SLICE).is_ok(),
            "pid 0 with WAITERS is free"
        );
        taken_over(0x7fff_ffff, "every bit but WAITERS");

        // The check is not "always dead": the word that process would write
        // is a live holder.
        let lock = Lock::new().expect("create");
        lock.raw().scribble(right);
        assert!(matches!(
            lock.acquire_timeout(LIVENESS_SLICE * 3),
            Err(AcquireTimeoutError::Timeout(_))
        ));
        assert_eq!(lock.holder(), Some(pid));
        drop(bystander);
        // ... until it ends.
        assert!(matches!(
            lock.acquire_timeout(LIVENESS_SLICE * 100),
            Err(AcquireTimeoutError::OwnerDied(_))
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "starts a process and reads /proc")]
    fn an_untimed_lock_does_not_hang_on_a_live_non_holder() {
        let bystander = Bystander::start();
        let lock = Lock::new().expect("create");
        lock.raw().scribble(bystander.pid() | WAITERS);
        let (tx, rx) = std::sync::mpsc::channel();
        let l = lock.clone();
        let t = std::thread::spawn(move || {
            let got = l.acquire().map(drop);
            let _ = tx.send(got.is_err());
        });
        let owner_died = rx
            .recv_timeout(LIVENESS_SLICE * 100)
            .expect("lock() hung on a word naming a live process that never took it");
        assert!(owner_died, "the take-over is reported as OwnerDied");
        t.join().expect("thread");
    }

    #[test]
    fn owner_ids_keep_pid_and_waiters_apart() {
        for start in [0, 1, 2, 99, u64::MAX] {
            let id = crate::park::owner_id(0x3f_ffff, start);
            assert_eq!(crate::park::task_of(id), 0x3f_ffff);
            assert_eq!(id & WAITERS, 0);
            assert_ne!(id >> crate::park::TASK_BITS, 0, "the tag is never 0");
        }
        assert_ne!(crate::park::start_tag(100), crate::park::start_tag(101));
    }

    #[test]
    fn threads_exclude_each_other() {
        let lock = Lock::new().expect("create");
        let count = std::sync::Arc::new(std::sync::Mutex::new(0u64));
        let mut handles = Vec::new();
        for _ in 0..4 {
            let (lock, count) = (lock.clone(), std::sync::Arc::clone(&count));
            handles.push(std::thread::spawn(move || {
                for _ in 0..1000 {
                    let _g = lock.acquire().expect("nobody dies");
                    let mut c = count.try_lock().expect("the shm lock excludes");
                    *c += 1;
                }
            }));
        }
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(*count.lock().expect("lock"), 4000);
    }
}

/// A [`Lock`]'s two words, to embed in a shared layout of one's own (the
/// queues put theirs beside their rings).
///
/// All-zero bytes are an unlocked lock; any bits are safe to hand it (a
/// nonsense holder reads as a dead one and is taken over). Owners are
/// process ids with a start tag, as for [`Lock`].
#[cfg(not(loom))]
#[repr(transparent)]
#[derive(Default)]
pub struct ProcessLock(RawLock);

#[cfg(not(loom))]
impl fmt::Debug for ProcessLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLock")
            .field("holder", &self.0.holder_task())
            .finish()
    }
}

#[cfg(not(loom))]
impl ProcessLock {
    /// Takes the lock for this process, waiting until `deadline` (forever
    /// with `None`). `None` on timeout; `Some(true)` when it was taken from
    /// a holder that died holding it.
    #[inline]
    pub fn lock_until(&self, deadline: Option<Deadline>) -> Option<bool> {
        self.0
            .lock::<Futex>(Futex::process_id(), deadline)
            .map(|taken| taken == Taken::OwnerDied)
    }

    /// Takes the lock if it is free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.0.try_lock(Futex::process_id())
    }

    /// Takes the lock over if its holder died; true when taken.
    pub fn take_if_holder_dead(&self) -> bool {
        self.0.take_if_holder_dead::<Futex>(Futex::process_id())
    }

    /// Releases it; false when it was not locked.
    #[inline]
    pub fn unlock(&self) -> bool {
        self.0.unlock::<Futex>()
    }

    /// The pid of the holding process, if any (it may be dead, or a word
    /// no holder wrote; [`ProcessLock::take_if_holder_dead`] checks).
    pub fn holder(&self) -> Option<u32> {
        Some(self.0.holder_task()).filter(|&p| p != 0)
    }
}
