//! The futex sleep/wake floor between two processes: a round trip in which
//! each side sleeps in `FUTEX_WAIT` until the other publishes its turn and
//! wakes it. Nobody spins, so this is what any blocking hand-off (Event,
//! Condition, a contended lock's sleepers) pays at least; later rows
//! compare with it.
//!
//! Measured twice: unpinned, where the kernel usually runs both processes
//! on one CPU (a waker about to sleep pulls its wakee over: two context
//! switches, a few µs), and pinned to two CPUs, where each wake must bring
//! a halted vCPU back (tens of µs, `MACHINE.md`).
//!
//! # Memory ordering
//!
//! Each turn is published with Release and read with Acquire.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::Duration;

use shmproc::Process;

use crate::Mode;
use crate::harness::affinity::{allowed_cpus, pin_to};
use crate::harness::report::{Measured, Report, Row};
use crate::harness::shared_map::{AtomicU32, Padded, SharedMap, ZeroShared};
use crate::harness::stats::{Stats, time_n};
use crate::peers::raw_sync::{futex_wait, futex_wake};

/// Two turn words, each on its own line, for a futex round trip between
/// two processes: the parent publishes `ping = i` and wakes; the child
/// sleeps until it sees `i`, publishes `pong = i` and wakes. Nobody spins:
/// this is the sleep/wake floor of blocking primitives (Event, Condition).
#[derive(Debug, Default)]
pub struct PingPong {
    ping: Padded<AtomicU32>,
    pong: Padded<AtomicU32>,
}

// SAFETY: two padded atomics; zero is "no turn yet".
unsafe impl ZeroShared for PingPong {}

/// How long the child waits for a turn before it decides the parent is gone.
pub const ABANDONED: Duration = Duration::from_secs(5);

impl PingPong {
    /// Sleeps until `word` reads `want`; false if nothing changed for
    /// [`ABANDONED`].
    fn await_turn(word: &AtomicU32, want: u32) -> bool {
        loop {
            // Acquire: pairs with the Release store of the other side.
            let seen = word.load(Acquire);
            if seen == want {
                return true;
            }
            if !futex_wait(word, seen, Some(ABANDONED)) {
                return false;
            }
        }
    }

    /// The parent's side: one round trip, turn `i` (1, 2, ...).
    ///
    /// # Panics
    ///
    /// If the child does not answer within [`ABANDONED`].
    pub fn round_trip(&self, i: u32) {
        // Release: pairs with the Acquire in the child's `await_turn`.
        self.ping.store(i, Release);
        futex_wake(&self.ping, 1);
        assert!(Self::await_turn(&self.pong, i), "ping-pong child stopped answering");
    }

    /// The child's side: answers turns 1..=`turns`, or stops when the parent
    /// stops asking for [`ABANDONED`].
    pub fn serve(&self, turns: u32) {
        for i in 1..=turns {
            if !Self::await_turn(&self.ping, i) {
                return;
            }
            // Release: pairs with the Acquire in the parent's `await_turn`.
            self.pong.store(i, Release);
            futex_wake(&self.pong, 1);
        }
    }
}

/// Seconds per round trip, with the parent and child pinned to the given
/// CPUs, or unpinned.
///
/// # Panics
///
/// If the mapping, the child or the pinning fails.
pub fn measure(mode: Mode, cpus: Option<(usize, usize)>) -> Stats {
    let (n, w) = (mode.scale(2000), mode.warmup(100));
    let pp = Arc::new(SharedMap::<PingPong>::new().expect("map the ping-pong words"));
    let turns = u32::try_from(n + w).expect("a few thousand turns");
    let child = {
        let pp = Arc::clone(&pp);
        Process::from_closure(move || {
            let _pin = cpus.map(|(_, c)| pin_to(c).expect("pin the ping-pong child"));
            pp.serve(turns);
        })
    };
    let pin = cpus.map(|(p, _)| pin_to(p).expect("pin the parent"));
    child.start().expect("start the ping-pong child");
    let mut i = 0;
    let s = time_n(n, w, || {
        i += 1;
        pp.round_trip(i);
    });
    drop(pin);
    assert_eq!(
        child.join().expect("join the ping-pong child"),
        0,
        "ping-pong child failed"
    );
    s
}

/// Adds the floor rows (measurements only) to `report`.
pub fn rows(mode: Mode, report: &mut Report) {
    let unpinned = measure(mode, None);
    let m = report.measure(Measured::new("futex ping-pong, unpinned (raw)", unpinned));
    report
        .rows
        .push(Row::info("futex wake round trip, 2 processes, unpinned (floor)", m));
    match allowed_cpus().as_deref() {
        Ok([a, b, ..]) => {
            let pinned = measure(mode, Some((*a, *b)));
            let m = report.measure(Measured::new("futex ping-pong, 2 CPUs (raw)", pinned));
            report
                .rows
                .push(Row::info("futex wake round trip, 2 processes on 2 CPUs (floor)", m));
        }
        Ok(_) => report
            .skipped
            .push("pinned futex round trip (fewer than 2 CPUs allowed)".to_owned()),
        Err(e) => report.skipped.push(format!("pinned futex round trip ({e})")),
    }
}
