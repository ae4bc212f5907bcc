//! Waiting and waking: deadlines, futexes, `membarrier`, the monotonic clock.

use std::time::Duration;

use rustix::event::Timespec;

/// An absolute point on the monotonic clock, as the kernel's futex timeouts
/// take it: waits that are interrupted and restarted keep the same deadline,
/// so signals and spurious wake-ups neither shorten nor stretch a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub(in crate::sys) ts: Timespec,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 2);
        let mut ts = Timespec {
            tv_sec: now.tv_sec.saturating_add(secs),
            tv_nsec: now.tv_nsec + i64::from(timeout.subsec_nanos()),
        };
        if ts.tv_nsec >= 1_000_000_000 {
            ts.tv_nsec -= 1_000_000_000;
            ts.tv_sec = ts.tv_sec.saturating_add(1);
        }
        Self { ts }
    }

    /// The earlier of two deadlines.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        if (self.ts.tv_sec, self.ts.tv_nsec) <= (other.ts.tv_sec, other.ts.tv_nsec) {
            self
        } else {
            other
        }
    }

    /// Whether the deadline has passed.
    pub fn has_passed(&self) -> bool {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        (now.tv_sec, now.tv_nsec) >= (self.ts.tv_sec, self.ts.tv_nsec)
    }
}

/// Why a futex wait returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken, or the word no longer held the expected value, or a signal:
    /// the caller re-checks its condition.
    Retry,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline`. Never uses
/// `FUTEX_PRIVATE_FLAG`: the word may live in memory shared between
/// processes.
#[allow(clippy::disallowed_types, reason = "the futex word is shared memory")]
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32, deadline: Option<Deadline>) -> FutexWait {
    let bitset = core::num::NonZeroU32::MAX;
    let ts = deadline.map(|d| d.ts);
    match rustix::thread::futex::wait_bitset(
        word,
        rustix::thread::futex::Flags::empty(),
        expected,
        ts.as_ref(),
        bitset,
    ) {
        Err(rustix::io::Errno::TIMEDOUT) => FutexWait::TimedOut,
        _ => FutexWait::Retry,
    }
}

/// Wakes up to `n` processes or threads sleeping on `word` (shared futex).
/// Returns how many were woken.
#[allow(clippy::disallowed_types, reason = "the futex word is shared memory")]
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) -> usize {
    // The kernel reads the count as an `int`: u32::MAX would mean -1 and
    // wake a single sleeper. "All" is i32::MAX.
    let n = n.min(i32::MAX.unsigned_abs());
    rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), n).unwrap_or(0)
}

/// What this process found out about `membarrier` (`MB_*`).
/// Registration is per address space: a fork child registers again
/// (`MB_REREGISTER`), but keeps a refusal or the `SHM_MEMBARRIER=off`
/// switch of its parent (same kernel, same seccomp filter, same
/// environment) without reading the environment, which a child of a
/// multi-threaded parent may not do.
#[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
static MEMBARRIER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(MB_UNKNOWN);

/// Runs in the child of every fork (from `process`'s fork hook): a
/// registered parent's child must register again.
pub(super) fn forget_membarrier_after_fork() {
    use core::sync::atomic::Ordering::Relaxed;
    // Relaxed: the child has one thread at this point.
    if MEMBARRIER.load(Relaxed) == MB_ON {
        MEMBARRIER.store(MB_REREGISTER, Relaxed);
    }
}

/// The environment variable that, set to `off` in a process, makes it use
/// the fence path of the sleep handshake instead of `membarrier` (for
/// tests, and for sandboxes that let the call through but make it slow).
/// Children inherit it; processes that share a ring should agree (see
/// [`membarrier_active`]).
pub const MEMBARRIER_ENV: &str = "SHM_MEMBARRIER";

/// Not probed yet in this process.
const MB_UNKNOWN: u32 = 0;
/// Registered in this address space; the expedited call works.
const MB_ON: u32 = 1;
/// Refused, or switched off: both sides of the handshake fence.
const MB_OFF: u32 = 2;
/// A fork child of an `MB_ON` process: register again.
const MB_REREGISTER: u32 = 3;

/// Whether the sleep handshake of the rings uses `membarrier` in this
/// process: probed once per process (registration for
/// `GLOBAL_EXPEDITED`, then one expedited call, both checked; a fork child
/// registers again), unless [`MEMBARRIER_ENV`] is `off`. When it is not
/// available (seccomp, gVisor, a kernel before 4.16, Miri), a debug line
/// says so once and [`membarrier_global`] and [`membarrier_light`] are both
/// `fence(SeqCst)`.
///
/// The mode is per process. If a process that sleeps fences while one that
/// wakes it relies on `membarrier` (the switch set in one of them only, or
/// a seccomp filter installed later in one), a wake can be missed; the
/// sleeper then finds the change at the end of its liveness slice
/// ([`crate::LIVENESS_SLICE`]): late, never lost.
#[inline]
pub fn membarrier_active() -> bool {
    // Relaxed: a process-local setting; every thread that probes finds the
    // same answer.
    match MEMBARRIER.load(core::sync::atomic::Ordering::Relaxed) {
        MB_ON => true,
        MB_OFF => false,
        state => membarrier_probe(state),
    }
}

#[cold]
fn membarrier_probe(state: u32) -> bool {
    use rustix::thread::{MembarrierCommand, membarrier};
    super::process::register_fork_hook();
    let refused = if cfg!(miri) {
        Some("Miri has no membarrier".to_owned())
    } else if state == MB_UNKNOWN && std::env::var_os(MEMBARRIER_ENV).is_some_and(|v| v == "off") {
        Some(format!("{MEMBARRIER_ENV}=off"))
    } else {
        match membarrier(MembarrierCommand::RegisterGlobalExpedited)
            .and_then(|()| membarrier(MembarrierCommand::GlobalExpedited))
        {
            Ok(()) => None,
            Err(e) => Some(format!("membarrier(GLOBAL_EXPEDITED) refused: {e}")),
        }
    };
    if let Some(reason) = &refused
        && state == MB_UNKNOWN
    {
        // Not in a fork child (`MB_REREGISTER`), which may not take the
        // subscriber's locks; a refusal there is the kernel's, unexpected.
        tracing::debug!("sleep handshake uses fences ({reason})");
    }
    let on = refused.is_none();
    // Relaxed: a process-local setting; racing probes store the same.
    MEMBARRIER.store(if on { MB_ON } else { MB_OFF }, core::sync::atomic::Ordering::Relaxed);
    on
}

/// Probes [`membarrier_active`] (and registers this process) ahead of use.
/// Returns whether `membarrier` is in use.
pub fn membarrier_register() -> bool {
    membarrier_active()
}

/// The slow side of the rings' sleep handshake: an asymmetric full memory
/// barrier. With `membarrier` ([`membarrier_active`]), when it returns
/// every thread of every registered process that was running has executed
/// a full barrier, so the fast side needs only [`membarrier_light`]'s
/// compiler barrier (liburcu's `sys_membarrier` scheme). Without it, a
/// `fence(SeqCst)`, paired with the fast side's.
pub fn membarrier_global() {
    if !membarrier_active() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        return;
    }
    if rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_err() {
        // Worked at the probe, refused now: the slow global barrier still
        // reaches every running thread of every process.
        let _ = rustix::thread::membarrier(rustix::thread::MembarrierCommand::Global);
    }
}

/// The fast side of the rings' sleep handshake: a compiler barrier when
/// [`membarrier_global`] issues `membarrier`, a `fence(SeqCst)` otherwise.
/// Costs one process-local load and a predicted branch over the barrier.
#[inline]
pub fn membarrier_light() {
    if membarrier_active() {
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    } else {
        light_fence();
    }
}

#[cold]
#[inline(never)]
fn light_fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Nanoseconds on the monotonic clock: comparable between processes of
/// this machine (for latency measurements).
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The switch forces the fence path, the answer does not change once
    /// probed, and both sides of the handshake run in either mode.
    #[test]
    fn membarrier_mode_follows_the_switch_and_stays() {
        let off = std::env::var_os(MEMBARRIER_ENV).is_some_and(|v| v == "off");
        let active = membarrier_active();
        if off || cfg!(miri) {
            assert!(!active, "{MEMBARRIER_ENV}=off (or Miri) must select the fence path");
        }
        assert_eq!(membarrier_register(), active, "the probe is made once");
        membarrier_global();
        membarrier_light();
        assert_eq!(membarrier_active(), active, "the mode does not change");
    }
}
