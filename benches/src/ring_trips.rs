//! Busy-polling round trips between two processes pinned one per CPU: the
//! cache-line floor (each side spins until it sees its turn, then flips),
//! a `u64` over two `shm::spsc` rings (`try_push` on one, spin on
//! `try_pop` of the other; the child echoes), and the same over two
//! hand-tuned rings ([`crate::hand_ring`]).
//!
//! One child, forked once, runs the same plan of blocks as the parent:
//! the floor alone, then the three cases alternating block by block, then
//! the floor alone again. A block is [`TRIPS`] round trips timed together,
//! so the timer costs nothing; a sample is the block's mean.
//!
//! # Memory ordering
//!
//! The floor's turns are stored with Release and read with Acquire; the
//! rings order themselves.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use shm::spsc::{self, Consumer, Producer, RingError};

use crate::Mode;
use crate::hand_ring::{self, HandRx, HandTx, spin_until};
use crate::raw_sync::{AtomicU64, Padded, SharedMap, ZeroShared};
use crate::ring_bench::fork_pinned;
use crate::stats::Stats;

/// Round trips per timed block.
pub const TRIPS: u32 = 1000;

/// The floor's two turn words, each on its own line.
#[derive(Debug, Default)]
struct Lines {
    ping: Padded<AtomicU64>,
    pong: Padded<AtomicU64>,
}

// SAFETY: two padded atomics; zero is "no turn yet".
unsafe impl ZeroShared for Lines {}

/// The cases, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trip {
    Floor,
    Ours,
    Hand,
}

const CASES: [Trip; 3] = [Trip::Floor, Trip::Ours, Trip::Hand];

/// Where the parent files a block's sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bucket {
    Warm,
    Before,
    Alternating(usize),
    After,
}

/// The blocks, in order; parent and child walk the same list.
fn plan(n: usize, w: usize) -> Vec<(Trip, Bucket)> {
    let mut p: Vec<(Trip, Bucket)> = CASES.iter().flat_map(|&c| vec![(c, Bucket::Warm); w]).collect();
    p.extend(vec![(Trip::Floor, Bucket::Before); n]);
    for _ in 0..n {
        p.extend(CASES.iter().enumerate().map(|(k, &c)| (c, Bucket::Alternating(k))));
    }
    p.extend(vec![(Trip::Floor, Bucket::After); n]);
    p
}

/// Pushes `v` on our ring, spinning while it is full.
#[inline]
pub fn push_ours(tx: &mut Producer<u64>, v: u64) {
    spin_until(|| match tx.try_push(v) {
        Ok(()) => Some(()),
        Err(e) if e.kind == RingError::Full => None,
        Err(e) => panic!("push: {e}"),
    });
}

/// Pops from our ring, spinning while it is empty.
#[inline]
pub fn pop_ours(rx: &mut Consumer<u64>) -> u64 {
    spin_until(|| match rx.try_pop() {
        Ok(v) => Some(v),
        Err(RingError::Empty) => None,
        Err(e) => panic!("pop: {e}"),
    })
}

/// One process's ends of every case: it sends on `*_tx`, hears on `*_rx`.
struct Side {
    lines: Arc<SharedMap<Lines>>,
    ours_tx: Producer<u64>,
    ours_rx: Consumer<u64>,
    hand_tx: HandTx,
    hand_rx: HandRx,
    /// Round trips done so far (the floor's turn, the rings' payload).
    turn: u64,
}

impl Side {
    /// The parent's side of one block.
    fn ask(&mut self, case: Trip) {
        for _ in 0..TRIPS {
            self.turn += 1;
            let t = self.turn;
            let got = match case {
                Trip::Floor => {
                    // Release: pairs with the child's Acquire load.
                    self.lines.ping.store(t, Release);
                    // Acquire: pairs with the child's Release store.
                    spin_until(|| (self.lines.pong.load(Acquire) == t).then_some(t))
                }
                Trip::Ours => {
                    push_ours(&mut self.ours_tx, t);
                    pop_ours(&mut self.ours_rx)
                }
                Trip::Hand => {
                    spin_until(|| self.hand_tx.try_push(t).then_some(()));
                    spin_until(|| self.hand_rx.try_pop())
                }
            };
            assert_eq!(got, t, "the child echoed something else");
        }
    }

    /// The child's side of one block.
    fn answer(&mut self, case: Trip) {
        for _ in 0..TRIPS {
            self.turn += 1;
            let t = self.turn;
            match case {
                Trip::Floor => {
                    // Acquire: pairs with the parent's Release store.
                    spin_until(|| (self.lines.ping.load(Acquire) == t).then_some(()));
                    // Release: pairs with the parent's Acquire load.
                    self.lines.pong.store(t, Release);
                }
                Trip::Ours => {
                    let v = pop_ours(&mut self.ours_rx);
                    push_ours(&mut self.ours_tx, v);
                }
                Trip::Hand => {
                    let v = spin_until(|| self.hand_rx.try_pop());
                    spin_until(|| self.hand_tx.try_push(v).then_some(()));
                }
            }
        }
    }
}

/// What the busy-polling round trips measured, seconds per round trip.
#[derive(Clone, Copy, Debug)]
pub struct Trips {
    /// The floor alone, before the alternating blocks.
    pub before: Stats,
    /// The floor alternating with the rings.
    pub floor: Stats,
    /// Ours, alternating.
    pub ours: Stats,
    /// The hand-tuned ring, alternating.
    pub hand: Stats,
    /// The floor alone, after.
    pub after: Stats,
}

/// Forks the child, runs the plan, and summarises each bucket.
///
/// # Panics
///
/// If a mapping, a ring, the pinning or the child fails.
pub fn measure(mode: Mode, cpus: (usize, usize)) -> Trips {
    let (n, w) = (mode.scale(300), mode.warmup(20));
    let lines = Arc::new(SharedMap::<Lines>::new().expect("map the floor's lines"));
    let (ours_a, ours_a_rx) = spsc::channel::<u64>(64).expect("create a ring");
    let (ours_b_tx, ours_b) = spsc::channel::<u64>(64).expect("create a ring");
    let (hand_a, hand_a_rx) = hand_ring::channel().expect("map a hand-tuned ring");
    let (hand_b_tx, hand_b) = hand_ring::channel().expect("map a hand-tuned ring");
    let steps = plan(n, w);
    let mut child_side = Side {
        lines: Arc::clone(&lines),
        ours_tx: ours_b_tx,
        ours_rx: ours_a_rx,
        hand_tx: hand_b_tx,
        hand_rx: hand_a_rx,
        turn: 0,
    };
    let child_steps = steps.clone();
    let child = fork_pinned(cpus.1, move || {
        for (case, _) in child_steps {
            child_side.answer(case);
        }
    });
    let mut me = Side {
        lines,
        ours_tx: ours_a,
        ours_rx: ours_b,
        hand_tx: hand_a,
        hand_rx: hand_b,
        turn: 0,
    };
    let pin = crate::affinity::pin_to(cpus.0).expect("pin the parent");
    let mut buckets: [Vec<Duration>; 5] = Default::default();
    for (case, bucket) in steps {
        let t = Instant::now();
        me.ask(case);
        let dt = t.elapsed();
        let slot = match bucket {
            Bucket::Warm => continue,
            Bucket::Before => 0,
            Bucket::Alternating(k) => 1 + k,
            Bucket::After => 4,
        };
        buckets[slot].push(dt);
    }
    drop(pin);
    assert_eq!(child.join().expect("join the ring child"), 0, "the ring child failed");
    let per_trip = 1.0 / f64::from(TRIPS);
    let s = |k: usize| Stats::from_durations(&buckets[k]).expect("n > 0 blocks").scaled(per_trip);
    Trips {
        before: s(0),
        floor: s(1),
        ours: s(2),
        hand: s(3),
        after: s(4),
    }
}
