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
//!
//! Locking is one compare-and-swap `0 -> id`; unlocking one swap to `0`,
//! plus a futex wake only when `WAITERS` was set. A waiter spins briefly,
//! then sets `WAITERS` and sleeps in slices of [`LIVENESS_SLICE`](crate::park::LIVENESS_SLICE); after
//! each slice it checks that the holder still runs, and if not takes the
//! lock over with one compare-and-swap from the exact word it judged, so
//! two survivors never both win. The taker gets [`OwnerDied`] and the lock's
//! `inconsistent` flag is set until [`Lock::mark_consistent`].
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

use crate::error::{LockResult, OwnerDied, SyncError, TryLockError, TryLockResult};
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
        // Relaxed: read only by the holder, or after an Acquire take.
        self.inconsistent.store(1, Relaxed);
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

    /// If the lock's holder is dead, takes it over for `me` without waiting
    /// (the same compare-and-swap as a waiter whose slice ran out).
    pub(crate) fn take_if_holder_dead<P: Park>(&self, me: u32) -> bool {
        // Relaxed: a fresh look; the take re-checks with Acquire.
        let seen = self.state.load(Relaxed);
        self.take_from_dead::<P>(seen, me).is_some()
    }

    /// The holder's owner id (task id and start tag), 0 when unlocked.
    pub(crate) fn holder(&self) -> u32 {
        // Relaxed: a snapshot for display and checks.
        owner(self.state.load(Relaxed))
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
/// Any thread or process may release it, as in Python. If the holder dies,
/// the next blocking (or timed) acquirer gets the lock within about
/// [`LIVENESS_SLICE`](crate::park::LIVENESS_SLICE) together with [`OwnerDied`].
///
/// Clones are the same lock; so is a child's copy passed as an argument.
///
/// # Examples
///
/// ```
/// let lock = shm_sync::Lock::new()?;
/// {
///     let _guard = lock.lock().expect("nobody died");
///     assert!(lock.is_locked());
///     assert!(lock.try_lock().is_err());
/// }
/// assert!(!lock.is_locked());
/// assert!(lock.release().is_err(), "releasing an unlocked lock is an error");
/// # Ok::<(), shm_core::SegmentError>(())
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

/// Holds a [`Lock`] until dropped.
#[cfg(not(loom))]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

#[cfg(not(loom))]
impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

#[cfg(not(loom))]
impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw().unlock::<Futex>();
    }
}

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

    pub(crate) fn raw(&self) -> &RawLock {
        self.shared.get()
    }

    fn guard(&self, taken: Taken) -> LockResult<LockGuard<'_>> {
        let guard = LockGuard { lock: self };
        match taken {
            Taken::Clean => Ok(guard),
            Taken::OwnerDied => Err(OwnerDied::new(guard)),
        }
    }

    /// Blocks until the lock is held.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (with the guard) when the previous holder died holding it.
    ///
    /// # Panics
    ///
    /// Never: without a deadline the wait ends only with the lock held.
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        let taken = self
            .raw()
            .lock::<Futex>(Futex::process_id(), None)
            .expect("no deadline");
        self.guard(taken)
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held.
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        if self.raw().try_lock(Futex::process_id()) {
            Ok(LockGuard { lock: self })
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Waits up to `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] on timeout, [`TryLockError::OwnerDied`]
    /// (with the guard) when the previous holder died holding it.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        match self
            .raw()
            .lock::<Futex>(Futex::process_id(), Some(Deadline::after(timeout)))
        {
            None => Err(TryLockError::WouldBlock),
            Some(taken) => self.guard(taken).map_err(TryLockError::OwnerDied),
        }
    }

    /// Python's `acquire(block, timeout)`: returns whether the lock is now
    /// held; release it with [`Lock::release`].
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when the lock **is now held** but its previous holder
    /// died holding it.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, OwnerDied<()>> {
        let me = Futex::process_id();
        if !block {
            return Ok(self.raw().try_lock(me));
        }
        match self.raw().lock::<Futex>(me, timeout.map(Deadline::after)) {
            None => Ok(false),
            Some(Taken::Clean) => Ok(true),
            Some(Taken::OwnerDied) => Err(OwnerDied::new(())),
        }
    }

    /// Python's `release()`.
    ///
    /// # Errors
    ///
    /// [`SyncError::NotLocked`] if the lock is not held.
    pub fn release(&self) -> Result<(), SyncError> {
        if self.raw().unlock::<Futex>() {
            Ok(())
        } else {
            Err(SyncError::NotLocked)
        }
    }

    /// Whether someone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.raw().holder() != 0
    }

    /// The pid of the holder, if held.
    pub fn holder(&self) -> Option<u32> {
        Some(self.raw().holder_task()).filter(|&h| h != 0)
    }

    /// Whether the lock was taken over from a dead holder since the last
    /// [`Lock::mark_consistent`]: the data it guards may be half-updated.
    pub fn is_inconsistent(&self) -> bool {
        self.raw().inconsistent()
    }

    /// Declares the guarded data repaired.
    pub fn mark_consistent(&self) {
        self.raw().mark_consistent();
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use super::*;
    use crate::park::LIVENESS_SLICE;

    #[test]
    fn lock_unlock_and_errors() {
        let lock = Lock::new().expect("create");
        assert!(!lock.is_locked());
        assert_eq!(lock.release(), Err(SyncError::NotLocked));
        assert_eq!(lock.acquire(true, None).ok(), Some(true));
        assert_eq!(lock.holder(), Some(std::process::id()));
        assert_eq!(lock.acquire(false, None).ok(), Some(false));
        assert_eq!(lock.acquire(true, Some(Duration::from_millis(10))).ok(), Some(false));
        assert!(matches!(
            lock.lock_timeout(Duration::from_millis(1)),
            Err(TryLockError::WouldBlock)
        ));
        lock.release().expect("held");
        drop(lock.lock().expect("free"));
        assert!(!lock.is_locked());
    }

    #[test]
    fn a_dead_holder_is_taken_over() {
        let lock = Lock::new().expect("create");
        // A holder that does not exist (pid_max is far below this).
        lock.raw().state.store(0x3fff_fff0, Relaxed);
        let err = lock.lock().expect_err("the holder is dead");
        assert!(lock.is_inconsistent());
        assert_eq!(lock.holder(), Some(std::process::id()));
        drop(err.into_guard());
        lock.mark_consistent();
        assert!(!lock.is_inconsistent() && !lock.is_locked());
    }

    #[test]
    fn garbage_is_recovered_by_a_timed_acquire() {
        let lock = Lock::new().expect("create");
        lock.raw().state.store(u32::MAX, Relaxed);
        assert!(matches!(
            lock.lock_timeout(LIVENESS_SLICE * 3),
            Err(TryLockError::OwnerDied(_))
        ));
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
        let start = shm_core::liveness::start_time(task).expect("a live task has a start time");
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
        match lock.lock_timeout(LIVENESS_SLICE * 100) {
            Err(TryLockError::OwnerDied(e)) => drop(e.into_guard()),
            Ok(_) => panic!("{what}: taken as if free"),
            Err(TryLockError::WouldBlock) => panic!("{what}: {word:#x} was taken for a live holder"),
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
        assert!(free.lock_timeout(LIVENESS_SLICE).is_ok(), "pid 0 with WAITERS is free");
        taken_over(0x7fff_ffff, "every bit but WAITERS");

        // The check is not "always dead": the word that process would write
        // is a live holder.
        let lock = Lock::new().expect("create");
        lock.raw().scribble(right);
        assert!(matches!(
            lock.lock_timeout(LIVENESS_SLICE * 3),
            Err(TryLockError::WouldBlock)
        ));
        assert_eq!(lock.holder(), Some(pid));
        drop(bystander);
        // ... until it ends.
        assert!(matches!(
            lock.lock_timeout(LIVENESS_SLICE * 100),
            Err(TryLockError::OwnerDied(_))
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
            let got = l.lock().map(drop).map_err(|e| drop(e.into_guard()));
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
        assert_ne!(shm_core::liveness::start_tag(100), shm_core::liveness::start_tag(101));
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
                    let _g = lock.lock().expect("nobody dies");
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
