//! How the algorithms wait, wake and tell who is alive: a parameter, so that
//! the same code runs on futexes across processes and under loom.
//!
//! The algorithms never make system calls themselves (iceoryx2's
//! `strategy/` does the same): [`Futex`] is the real implementation,
//! `Spin` the loom one.

use shm_core::sys::{Deadline, FutexWait};

use crate::sync::AtomicU32;

/// How long a sleeper waits before it checks that the holder it waits for
/// is still alive (one constant for the whole library, defined in
/// `shm_core`). A dead holder is noticed within this time.
pub use shm_core::LIVENESS_SLICE;

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

/// Waiting, waking and liveness, as the algorithms need them.
pub trait Park {
    /// Sleeps while `*word == expected`, until woken or `deadline`.
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> FutexWait;
    /// Wakes up to `n` sleepers on `word`.
    fn wake(word: &AtomicU32, n: u32);
    /// This process's id (an owner id of a [`Lock`](crate::Lock)).
    fn process_id() -> u32;
    /// This thread's id (an owner id of an [`RLock`](crate::RLock)).
    fn thread_id() -> u32;
    /// Whether the process or thread `id` still runs.
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
        shm_core::sys::futex_wait(word, expected, deadline)
    }

    #[inline]
    fn wake(word: &AtomicU32, n: u32) {
        shm_core::sys::futex_wake(word, n);
    }

    #[inline]
    fn process_id() -> u32 {
        shm_core::sys::cached_pid()
    }

    #[inline]
    fn thread_id() -> u32 {
        shm_core::sys::cached_tid()
    }

    fn alive(id: u32) -> bool {
        shm_core::sys::task_alive(id)
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
