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
///
/// `ready` must also be true once the other side closed: a close does not
/// change `word`, so its wake ([`wake_for_close`]) reaches a sleeper only
/// through this last look or while the flag is up.
pub(crate) fn sleep_on(
    word: &Word,
    seen: u32,
    flag: &Word,
    deadline: Option<Deadline>,
    mut ready: impl FnMut() -> bool,
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

/// Wakes whoever sleeps on `word` under `flag` for a change that `word`
/// does not show: a close, stored (Release) just before this call.
///
/// A wake that comes before the sleeper's futex call is lost when `word`
/// still holds what the sleeper saw (the kernel compares only the word),
/// and the sleeper would wait a whole liveness slice (loom found it in the
/// queue's close). The flag closes the gap: a sleeper that raised it before
/// our look is woken until it takes the flag down (it does once its futex
/// call returns); one that raises it after our look sees the close in its
/// last look ([`sleep_on`]'s `ready`). Outside loom the retries stop after
/// a liveness slice, so a sleeper that died with its flag up costs the
/// closer one slice, not a hang.
#[cold]
pub(crate) fn wake_for_close(word: &Word, flag: &Word) {
    // The fast side of the handshake, as in `wake_if_sleeping`: the close
    // stored before this barrier, the sleeper's membarrier after its raise.
    sync::light_barrier();
    #[cfg(not(loom))]
    let give_up = Deadline::after(shmproc_core::LIVENESS_SLICE);
    // Relaxed: the flag only says whom to wake (see `wake_sleeper`).
    while flag.load(Relaxed) != 0 {
        sync::futex_wake(word, u32::MAX);
        #[cfg(not(loom))]
        if give_up.has_passed() {
            return;
        }
        #[cfg(not(loom))]
        std::thread::yield_now();
        sync::before_retry();
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
