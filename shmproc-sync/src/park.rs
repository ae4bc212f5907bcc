//! How the algorithms wait, wake and tell who is alive: a parameter, so that
//! the same code runs on futexes across processes and under loom.
//!
//! The algorithms never make system calls themselves (iceoryx2's
//! `strategy/` does the same): [`Futex`] is the real implementation,
//! `Spin` the loom one.

use shmproc_core::liveness;
use shmproc_core::sys::{Deadline, FutexWait};

use crate::sync::AtomicU32;

/// How long a sleeper waits before it checks that the holder it waits for
/// is still alive (one constant for the whole library, defined in
/// `shmproc_core`). A dead holder is noticed within this time.
pub use shmproc_core::LIVENESS_SLICE;

/// Load-only spins a waiter makes before it sleeps, unless changed with
/// [`set_spins`]. On this kind of machine a futex wake-up costs 30-70 µs
/// (an idle virtual CPU halts); a spin that sees the awaited change first
/// costs a few hundred nanoseconds. The benchmark harness shows both.
pub const DEFAULT_SPINS: u32 = 200;

#[cfg(not(loom))]
#[allow(clippy::disallowed_types, reason = "a process-local setting, not shared memory")]
static SPINS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(DEFAULT_SPINS);

/// How many times waiters in this process spin before sleeping (0: sleep
/// at once). A tuning knob; the default suits a peer that answers within
/// microseconds.
#[cfg(not(loom))]
pub fn set_spins(spins: u32) {
    // Relaxed: a setting, read on each wait.
    SPINS.store(spins, core::sync::atomic::Ordering::Relaxed);
}

/// The current spin count (always 0 under loom).
#[inline]
pub fn spins() -> u32 {
    #[cfg(not(loom))]
    {
        // Relaxed: a setting.
        SPINS.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(loom)]
    {
        0
    }
}

/// Bits of an owner id that hold the task id (a pid or a tid): Linux never
/// hands out ids at or above `PID_MAX_LIMIT`, 2^22.
pub(crate) const TASK_BITS: u32 = 22;
/// The task id of an owner id.
pub(crate) const TASK_MASK: u32 = (1 << TASK_BITS) - 1;
/// The start-time tag of an owner id sits above the task id (bits 22..=30;
/// bit 31 stays free for a lock's `WAITERS` flag).
const TAG_MASK: u32 = liveness::TAG_MASK;
const _: () = assert!(TAG_MASK << TASK_BITS < 1 << 31);

/// The owner id of task `task` that started at `start`: the id in the low
/// [`TASK_BITS`], its start tag above.
#[inline]
pub(crate) fn owner_id(task: u32, start: u64) -> u32 {
    (task & TASK_MASK) | liveness::start_tag(start) << TASK_BITS
}

/// The task id (pid or tid) named by an owner id.
#[inline]
pub fn task_of(owner: u32) -> u32 {
    owner & TASK_MASK
}

/// Whether the owner id `owner` names a task that runs now **and** is the
/// one that wrote the id: the task exists, is not a zombie, and its start
/// time has the tag recorded in the id ([`shmproc_core::liveness::is_alive`]
/// with [`Started::Tag`](liveness::Started::Tag)). A reused id (another task with the same pid) or a
/// word no owner wrote (tag 0, id 0, a live task whose start time has
/// another tag) reads as dead.
///
/// When `/proc` does not let us read the start time of a task that exists
/// (hidepid), the task counts as the owner, as before owner ids had tags.
#[cfg(not(loom))]
pub fn owner_alive(owner: u32) -> bool {
    liveness::is_alive(task_of(owner), liveness::Started::Tag((owner >> TASK_BITS) & TAG_MASK))
}

/// This task's owner id, computed once per `(process, thread)` and cached
/// in `cache` as `task << 32 | id` (a fork child, whose task id differs,
/// computes its own).
#[cfg(not(loom))]
#[inline]
#[allow(clippy::cast_possible_truncation, reason = "the id is the low half")]
fn cached_owner_id(task: u32, cached: u64) -> Option<u32> {
    (cached >> 32 == u64::from(task)).then_some(cached as u32)
}

#[cfg(not(loom))]
#[cold]
fn compute_owner_id(task: u32) -> (u32, u64) {
    // A task can always read its own stat; 0 if /proc is missing altogether
    // (then no peer can read it either and the tag is never checked).
    // Miri cannot read /proc (isolation); its single process needs no tag.
    #[cfg(miri)]
    let start = 0;
    #[cfg(not(miri))]
    let start = liveness::start_time(task).unwrap_or(0);
    let id = owner_id(task, start);
    (id, u64::from(task) << 32 | u64::from(id))
}

#[cfg(not(loom))]
#[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
static PROCESS_OWNER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[cfg(not(loom))]
thread_local! {
    static THREAD_OWNER: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// The owner id of the running task `task` (its id with the tag of its
/// start time), as that task would record it; `None` when its start time
/// cannot be read (it is gone).
#[cfg(not(loom))]
pub fn owner_id_of(task: u32) -> Option<u32> {
    liveness::start_time(task).map(|start| owner_id(task, start))
}

/// This process's owner id: its pid with a tag of its start time, as a
/// [`Lock`](crate::Lock) records its holder. For other shared words that
/// name a process and are checked with [`owner_alive`], so that a reused pid
/// or a scribbled word naming some live process is not taken for the
/// process that wrote it. Computed once per process (a fork child computes
/// its own).
#[cfg(not(loom))]
#[inline]
pub fn process_owner_id() -> u32 {
    Futex::process_id()
}

/// Waiting, waking and liveness, as the algorithms need them.
pub trait Park {
    /// Sleeps while `*word == expected`, until woken or `deadline`.
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> FutexWait;
    /// Wakes up to `n` sleepers on `word`.
    fn wake(word: &AtomicU32, n: u32);
    /// This process's owner id (pid and start tag; the owner of a
    /// [`Lock`](crate::Lock)).
    fn process_id() -> u32;
    /// This thread's owner id (tid and start tag; the owner of an
    /// [`RLock`](crate::RLock), a party of a [`Barrier`](crate::Barrier)).
    fn thread_id() -> u32;
    /// Whether the owner id `id` names a task that still runs and is the
    /// one that wrote it (see `owner_alive`).
    fn alive(id: u32) -> bool;
    /// The next point at which a sleeper checks liveness: a slice from now,
    /// capped by `deadline`.
    fn slice(deadline: Option<Deadline>) -> Option<Deadline>;
    /// Whether `deadline` has passed.
    fn passed(deadline: Option<Deadline>) -> bool;
}

/// Futexes shared between processes, ids from the kernel.
#[cfg(not(loom))]
#[derive(Debug)]
pub struct Futex;

#[cfg(not(loom))]
impl Park for Futex {
    #[inline]
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> FutexWait {
        shmproc_core::sys::futex_wait(word, expected, deadline)
    }

    #[inline]
    fn wake(word: &AtomicU32, n: u32) {
        shmproc_core::sys::futex_wake(word, n);
    }

    #[inline]
    fn process_id() -> u32 {
        let pid = shmproc_core::sys::cached_pid();
        // Relaxed: a process-local cache; a stale or racing value fails the
        // pid comparison and is recomputed.
        let cached = PROCESS_OWNER.load(core::sync::atomic::Ordering::Relaxed);
        cached_owner_id(pid, cached).unwrap_or_else(|| {
            let (id, cache) = compute_owner_id(pid);
            // Relaxed: as above.
            PROCESS_OWNER.store(cache, core::sync::atomic::Ordering::Relaxed);
            id
        })
    }

    #[inline]
    fn thread_id() -> u32 {
        let tid = shmproc_core::sys::cached_tid();
        cached_owner_id(tid, THREAD_OWNER.with(core::cell::Cell::get)).unwrap_or_else(|| {
            let (id, cache) = compute_owner_id(tid);
            THREAD_OWNER.with(|c| c.set(cache));
            id
        })
    }

    fn alive(id: u32) -> bool {
        owner_alive(id)
    }

    fn slice(deadline: Option<Deadline>) -> Option<Deadline> {
        let slice = Deadline::after(LIVENESS_SLICE);
        Some(deadline.map_or(slice, |d| d.min(slice)))
    }

    fn passed(deadline: Option<Deadline>) -> bool {
        deadline.is_some_and(|d| d.has_passed())
    }
}

/// Loom's stand-in: waiting yields to another modelled thread.
#[cfg(loom)]
#[derive(Debug)]
pub struct Spin;

#[cfg(loom)]
impl Park for Spin {
    fn wait(_: &AtomicU32, _: u32, _: Option<Deadline>) -> FutexWait {
        loom::thread::yield_now();
        FutexWait::Retry
    }

    fn wake(_: &AtomicU32, _: u32) {}

    fn process_id() -> u32 {
        7
    }

    fn thread_id() -> u32 {
        // Loom threads have small distinct indices.
        let id = format!("{:?}", loom::thread::current().id());
        id.bytes()
            .filter(u8::is_ascii_digit)
            .fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))
            + 100
    }

    fn alive(_: u32) -> bool {
        true
    }

    fn slice(deadline: Option<Deadline>) -> Option<Deadline> {
        deadline
    }

    fn passed(_: Option<Deadline>) -> bool {
        false
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn our_owner_id_is_alive_and_a_bare_pid_is_not() {
        let me = process_owner_id();
        assert_eq!(task_of(me), std::process::id());
        assert!(owner_alive(me), "our own owner id names us");
        assert!(!owner_alive(std::process::id()), "a bare pid (tag 0) names no owner");
        let wrong = (1..=TAG_MASK)
            .map(|t| task_of(me) | t << TASK_BITS)
            .find(|&id| id != me)
            .expect("another tag");
        assert!(!owner_alive(wrong), "our pid with another start tag is not us");
        let tid = Futex::thread_id();
        assert!(owner_alive(tid), "this thread's owner id names it");
        let other = std::thread::spawn(Futex::thread_id).join().expect("thread");
        assert_ne!(other, tid);
        // The joined thread may still be finishing its exit in the kernel
        // for a moment after `join` returns.
        let start = std::time::Instant::now();
        while owner_alive(other) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "an ended thread still reads as alive"
            );
            std::thread::yield_now();
        }
    }
}
