//! The one switch for the rings' atomics and system calls (STYLE.md 1):
//! `core` atomics and `shmproc_core::sys` in every build that touches shared
//! memory; under `--cfg loom`, loom's atomics and the stand-ins of
//! [`model`], so that the ring algorithms run on heap memory while loom
//! explores their interleavings (`loom_tests.rs`).
//!
//! Aliases and re-exports rather than wrappers, so that outside loom the
//! rings compile to exactly what they would calling `core` and `sys`.

#[cfg(not(loom))]
#[allow(clippy::disallowed_types, reason = "this is the switch module")]
pub(crate) type AtomicU32 = core::sync::atomic::AtomicU32;

#[cfg(loom)]
pub(crate) type AtomicU32 = loom::sync::atomic::AtomicU32;

#[cfg(not(loom))]
#[allow(clippy::disallowed_types, reason = "this is the switch module")]
pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;

#[cfg(loom)]
pub(crate) type AtomicU64 = loom::sync::atomic::AtomicU64;

/// A fence of the algorithms' own: loom's under loom, so that it sees it.
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::fence;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;

#[cfg(not(loom))]
pub(crate) use shmproc_core::sys::{cached_pid, futex_wait, futex_wake, membarrier_global, membarrier_register};

/// Whether process `pid` still runs, by pid alone (for a pid from a
/// `ProcessLock`'s holder, which carries no start tag).
#[cfg(not(loom))]
pub(crate) fn task_alive(pid: u32) -> bool {
    shmproc_core::liveness::is_alive(pid, shmproc_core::liveness::Started::Any)
}

/// Whether a child of this process other than the fork server runs (the
/// queue's last liveness check: a child may use a queue it has not
/// registered in yet); true when `/proc` cannot tell.
#[cfg(not(loom))]
pub(crate) fn children_running() -> bool {
    let server = shmproc_core::forkserver_pid();
    shmproc_core::sys::live_children().is_none_or(|kids| kids.iter().any(|&k| Some(k) != server))
}

/// This process as the shared words that name a ring end's holder, a queue
/// user or an MPMC slot's claimant record it: its pid with a tag of its
/// start time (a lock's owner id), so that a reused pid or a scribbled word
/// naming some other live process does not pass for the process that wrote
/// it.
#[cfg(not(loom))]
#[inline]
pub(crate) fn owner_id() -> u32 {
    shmproc_sync::park::process_owner_id()
}

/// Whether the owner id `id` (see [`owner_id`]) names the live process that
/// wrote it.
#[cfg(not(loom))]
pub(crate) fn owner_alive(id: u32) -> bool {
    shmproc_sync::park::owner_alive(id)
}

/// The pid an owner id names (for messages).
#[cfg(not(loom))]
pub(crate) fn pid_of(id: u32) -> u32 {
    shmproc_sync::park::task_of(id)
}
#[cfg(not(loom))]
pub(crate) use std::time::Instant;

#[cfg(loom)]
pub(crate) use model::{
    DEAD, Heap, Instant, cached_pid, children_running, futex_wait, futex_wake, membarrier_global, membarrier_register,
    owner_alive, owner_id, pid_of, task_alive,
};

/// The barrier of the side of a sleep handshake that never sleeps: a
/// compiler barrier, to which the sleeper's `membarrier_global` adds the
/// hardware one; a `fence(SeqCst)` in a process where membarrier is not
/// available (see `spsc`'s module docs and
/// [`shmproc_core::sys::membarrier_active`]).
#[inline]
pub(crate) fn light_barrier() {
    #[cfg(not(loom))]
    shmproc_core::sys::membarrier_light();
    // Loom cannot model an asymmetric barrier: the fast side's share of the
    // membarrier is a fence of its own, paired with the one of
    // `model::membarrier_global`.
    #[cfg(loom)]
    loom::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Called before a lock-free retry loop goes round again: nothing outside
/// loom (a retry is immediate); under loom a yield, so that the loop lets
/// the thread it waits for run.
#[inline]
pub(crate) fn before_retry() {
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Loom's stand-ins: heap memory for a segment, a futex made of a mutex and
/// a condition variable, membarrier as a `SeqCst` fence, thread indices as
/// process ids, and one id that counts as a dead process.
#[cfg(loom)]
mod model {
    use std::ptr::NonNull;
    use std::time::Duration;

    use core::sync::atomic::Ordering::{Relaxed, SeqCst};
    use loom::cell::UnsafeCell;
    use loom::sync::{Condvar, Mutex};
    use shmproc_core::sys::{Deadline, FutexWait};
    use shmproc_sync::park::{Park, Spin};

    use super::AtomicU32;

    /// The id the model reports as a process that died: tests write it
    /// into owner words to stage a crash.
    pub(crate) const DEAD: u32 = 0x3fff_fff0;

    loom::lazy_static! {
        /// One wait queue for every word: a wake wakes every sleeper, and
        /// each re-checks its word (a futex wait may end early anyway).
        static ref FUTEX: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    /// Blocks until a wake, with no timeout: a sleeper nobody wakes is a
    /// deadlock, which loom reports. The compare happens under the mutex
    /// that every wake takes, as the kernel compares under its hash-bucket
    /// lock, so a wake that came first is not missed.
    pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _: Option<Deadline>) -> FutexWait {
        let (lock, cv) = &*FUTEX;
        let guard = lock.lock().expect("no panic while held");
        // Relaxed: the mutex orders this after any wake that took it first.
        if word.load(Relaxed) == expected {
            drop(cv.wait(guard).expect("no panic while held"));
        }
        FutexWait::Retry
    }

    /// Wakes every sleeper (of any word; each re-checks its own).
    pub(crate) fn futex_wake(_: &AtomicU32, _: u32) -> usize {
        let (lock, cv) = &*FUTEX;
        let _guard = lock.lock().expect("no panic while held");
        cv.notify_all();
        0
    }

    /// A `SeqCst` fence: with the one of `light_barrier` it gives what
    /// membarrier gives the handshake (a sleeper or its waker sees the
    /// other's store).
    pub(crate) fn membarrier_global() {
        loom::sync::atomic::fence(SeqCst);
    }

    pub(crate) fn membarrier_register() -> bool {
        true
    }

    /// Each modelled thread is a process of its own.
    pub(crate) fn cached_pid() -> u32 {
        Spin::thread_id()
    }

    pub(crate) fn task_alive(pid: u32) -> bool {
        pid != DEAD
    }

    /// Modelled threads start no processes.
    pub(crate) fn children_running() -> bool {
        false
    }

    /// Owner ids are the modelled thread's id (no start tags under loom).
    pub(crate) fn owner_id() -> u32 {
        cached_pid()
    }

    pub(crate) fn owner_alive(id: u32) -> bool {
        task_alive(id)
    }

    pub(crate) fn pid_of(id: u32) -> u32 {
        id
    }

    /// Loom's stand-in for a clock: a slot that looks stuck looks stuck long
    /// enough on the second look, so the dead-holder checks are
    /// deterministic.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Instant;

    impl Instant {
        pub(crate) fn now() -> Self {
            Self
        }

        #[allow(clippy::unused_self, reason = "mirrors std::time::Instant::elapsed")]
        pub(crate) fn elapsed(self) -> Duration {
            Duration::MAX
        }
    }

    /// Heap memory standing in for a ring's (or a duplex mailbox's)
    /// segment: the header as a value and one loom cell per slot, so that
    /// loom checks every slot access against the index protocol (a read of
    /// a slot not yet published, or a write to one not yet handed back, is
    /// a race it reports).
    pub(crate) struct Heap<H, T> {
        pub(crate) header: H,
        cells: Box<[UnsafeCell<T>]>,
    }

    impl<H, T: shmproc_core::ShmSafe> Heap<H, T> {
        /// `slots` zeroed slots, as a new segment has.
        pub(crate) fn new(header: H, slots: usize) -> Self {
            Self::with_slots(
                header,
                (0..slots).map(|_| {
                    // SAFETY: T is ShmSafe, so it accepts every bit pattern.
                    unsafe { std::mem::zeroed::<T>() }
                }),
            )
        }
    }

    impl<H, T> Heap<H, T> {
        /// Slots that start as `slots` (for raw bytes that must keep an
        /// alignment of their own, such as `duplex`'s mailbox cells).
        pub(crate) fn with_slots(header: H, slots: impl IntoIterator<Item = T>) -> Self {
            let cells = slots.into_iter().map(UnsafeCell::new).collect();
            Self { header, cells }
        }

        /// Slot `i`, for one access the protocol makes exclusive. Loom
        /// records it as a write, to be ordered after every earlier access
        /// of the slot (stricter than a read needs).
        pub(crate) fn slot(&self, i: usize) -> NonNull<T> {
            self.cells[i].with_mut(|p| NonNull::new(p).expect("a cell is never null"))
        }
    }
}
