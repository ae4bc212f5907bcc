//! The sleep/wake handshake every ring uses: a sleeper raises a flag and
//! issues a membarrier; the fast side looks at the flag after a compiler
//! barrier only (see the `spsc` module docs).

use std::sync::atomic::Ordering::Relaxed;

use shmproc_core::TryRecvError;
use shmproc_core::sys::{Deadline, FutexWait};

use super::{Slept, Stop, Word};
use crate::sync;

/// The value a sleeper raises its flag to: nonzero, and naming the value
/// of the word it waits to see change (the top bit is lost, harmlessly:
/// see `wake_sleeper`).
fn raised(seen: u32) -> u32 {
    seen | 1 << 31
}

/// Sleeps on `word` (expected `seen`) after raising `flag`, unless `ready()`
/// turns true once the flag is visible; one liveness slice at most.
pub(crate) fn sleep_on(
    word: &Word,
    seen: u32,
    flag: &Word,
    deadline: Option<Deadline>,
    ready: impl Fn() -> bool,
) -> Slept {
    // Relaxed + membarrier: the slow side of the handshake (module docs).
    flag.store(raised(seen), Relaxed);
    sync::membarrier_global();
    let slept = if ready() {
        Slept::Woken
    } else {
        let slice = Deadline::after(shmproc_core::LIVENESS_SLICE);
        let until = deadline.map_or(slice, |d| d.min(slice));
        match sync::futex_wait(word, seen, Some(until)) {
            FutexWait::TimedOut if deadline.is_some_and(|d| d.has_passed()) => Slept::DeadlinePassed,
            FutexWait::TimedOut => Slept::SliceOver,
            FutexWait::Retry => Slept::Woken,
        }
    };
    flag.store(0, Relaxed);
    slept
}

/// Wakes the other side if it said it sleeps.
#[inline]
pub(crate) fn wake_if_sleeping(word: &Word, flag: &Word) {
    // The fast side of the handshake: a compiler barrier only; the
    // sleeper's membarrier supplies the hardware one.
    sync::light_barrier();
    // Relaxed: ordered by the membarrier of whoever raised it.
    let up = flag.load(Relaxed);
    if up != 0 {
        wake_sleeper(word, flag, up);
    }
}

/// Wakes a sleeper that raised `flag` to `up`, and takes the flag down, so
/// that a sleeper that has not run yet costs one wake, not one per message
/// (it raises the flag again if it sleeps again). A take-down between its
/// raise and its futex call is harmless when `word` no longer holds what
/// the sleeper saw: the futex call returns at once. But a waker late with
/// a value the sleeper already saw (it then waits for the next one) leaves
/// the flag up for that next one: taken down, the next waker would not
/// wake, and the sleeper would wait a whole liveness slice (loom found it).
/// Equal top-bit-less values read as "already seen": that costs a wake more
/// later, never one less.
#[cold]
pub(crate) fn wake_sleeper(word: &Word, flag: &Word, up: u32) {
    // Relaxed: our own last store of `word`, or a newer one.
    let seen_already = up == raised(word.load(Relaxed));
    // Relaxed: the flag only says whom to wake; 0 there means the sleeper
    // (or another waker, which woke it) took it down since.
    if seen_already || flag.compare_exchange(up, 0, Relaxed, Relaxed) != Err(0) {
        sync::futex_wake(word, 1);
    }
}

/// A receiving end that can wait: what the blocking loop of [`receive`]
/// needs from it.
pub(crate) trait Receive {
    /// Whether the sender closed its end or (when `check_alive`) died.
    fn sender_gone(&self, check_alive: bool) -> bool;
    /// Sleeps until something may have come, one liveness slice at most.
    fn sleep(&self, deadline: Option<Deadline>) -> Slept;
}

/// The blocking receive: spin a while, then sleep in liveness slices; a
/// sender that closed or died ends the wait once what it sent is received.
/// `attempt` is one try that does not wait.
pub(crate) fn receive<E: Receive, R>(
    end: &mut E,
    deadline: Option<Deadline>,
    mut attempt: impl FnMut(&mut E) -> Result<R, TryRecvError>,
) -> Result<R, Stop> {
    let mut spins = shmproc_sync::park::spins();
    let mut slice_over = false;
    loop {
        match attempt(end) {
            Err(TryRecvError::Empty) => {}
            other => return other.map_err(recv_stop),
        }
        if spins > 0 {
            spins -= 1;
            core::hint::spin_loop();
            continue;
        }
        if end.sender_gone(slice_over) {
            // Whatever it sent before dying is still delivered.
            return match attempt(end) {
                Err(TryRecvError::Empty) => Err(Stop::Disconnected),
                other => other.map_err(recv_stop),
            };
        }
        match end.sleep(deadline) {
            Slept::DeadlinePassed => return Err(Stop::Timeout),
            slept => slice_over = slept == Slept::SliceOver,
        }
    }
}

/// A failed non-blocking receive that is not `Empty`, as a stop.
fn recv_stop(e: TryRecvError) -> Stop {
    match e {
        TryRecvError::Fault(f) => Stop::Fault(f),
        _ => Stop::Disconnected,
    }
}
