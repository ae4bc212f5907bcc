//! Busy-polling round trips between two processes pinned one per CPU: the
//! cache-line floor (one shared word: each side spins until it sees its
//! turn, then flips it), the same with one word per direction on lines of
//! their own (what a ring's index costs at least), a `u64` over a
//! `shmproc::duplex` channel (`try_send`, then spin on `try_recv`; the child
//! echoes), the same over two `shmproc::spsc` rings (`try_send` on one, spin
//! on `try_recv` of the other), and over two hand-tuned rings
//! ([`crate::peers::hand_ring`]).
//!
//! One child, forked once, runs the same plan of blocks as the parent:
//! the floor alone, then the five cases alternating block by block, then
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

use shmproc::duplex::{self, Duplex};
use shmproc::spsc::{self, Consumer, Producer};
use shmproc::{TryRecvError, TrySendError};

use crate::Mode;
use crate::groups::ring::fork_pinned;
use crate::harness::shared_map::{AtomicU64, Padded, SharedMap, ZeroShared};
use crate::harness::stats::Stats;
use crate::peers::hand_ring::{self, HandRx, HandTx, spin_until};

/// Slots of every ring here (ours and hand-tuned alike).
pub const SLOTS: usize = 64;

/// Round trips per timed block.
pub const TRIPS: u32 = 1000;

/// The floor's turn word, and the two-line variant's two words, each on a
/// line of its own.
#[derive(Debug, Default)]
struct Lines {
    word: Padded<AtomicU64>,
    ping: Padded<AtomicU64>,
    pong: Padded<AtomicU64>,
}

// SAFETY: padded atomics; zero is "no turn yet".
unsafe impl ZeroShared for Lines {}

/// The cases, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trip {
    Floor,
    TwoLines,
    Duplex,
    Ours,
    Hand,
}

const CASES: [Trip; 5] = [Trip::Floor, Trip::TwoLines, Trip::Duplex, Trip::Ours, Trip::Hand];

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
///
/// # Panics
///
/// If the ring reports anything but full, or stays full for
/// [`crate::groups::ping_pong::ABANDONED`].
#[inline]
pub fn push_ours(tx: &mut Producer<u64>, v: u64) {
    spin_until(|| match tx.try_send(v) {
        Ok(()) => Some(()),
        Err(TrySendError::Full(_)) => None,
        Err(e) => panic!("push: {e}"),
    });
}

/// Pops from our ring, spinning while it is empty.
///
/// # Panics
///
/// If the ring reports anything but empty, or stays empty for
/// [`crate::groups::ping_pong::ABANDONED`].
#[inline]
pub fn pop_ours(rx: &mut Consumer<u64>) -> u64 {
    spin_until(|| match rx.try_recv() {
        Ok(v) => Some(v),
        Err(TryRecvError::Empty) => None,
        Err(e) => panic!("pop: {e}"),
    })
}

/// Sends `v` on our duplex end, spinning while its ring is full.
///
/// # Panics
///
/// If the channel reports anything but full, or stays full for
/// [`crate::groups::ping_pong::ABANDONED`].
#[inline]
pub fn send_duplex(end: &mut Duplex<u64, u64>, v: u64) {
    spin_until(|| match end.try_send(v) {
        Ok(()) => Some(()),
        Err(TrySendError::Full(_)) => None,
        Err(e) => panic!("send: {e}"),
    });
}

/// Receives on our duplex end, spinning while nothing came.
///
/// # Panics
///
/// If the channel reports anything but empty, or stays empty for
/// [`crate::groups::ping_pong::ABANDONED`].
#[inline]
pub fn recv_duplex(end: &mut Duplex<u64, u64>) -> u64 {
    spin_until(|| match end.try_recv() {
        Ok(v) => Some(v),
        Err(TryRecvError::Empty) => None,
        Err(e) => panic!("recv: {e}"),
    })
}

/// One process's ends of every case: it sends on `*_tx`, hears on `*_rx`.
struct Side {
    lines: Arc<SharedMap<Lines>>,
    duplex: Duplex<u64, u64>,
    ours_tx: Producer<u64>,
    ours_rx: Consumer<u64>,
    hand_tx: HandTx<SLOTS>,
    hand_rx: HandRx<SLOTS>,
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
                    let word = &self.lines.word;
                    // Release/Acquire: pair with the child's store and load.
                    word.store(2 * t - 1, Release);
                    spin_until(|| (word.load(Acquire) == 2 * t).then_some(t))
                }
                Trip::TwoLines => {
                    // Release: pairs with the child's Acquire load.
                    self.lines.ping.store(t, Release);
                    // Acquire: pairs with the child's Release store.
                    spin_until(|| (self.lines.pong.load(Acquire) == t).then_some(t))
                }
                Trip::Duplex => {
                    send_duplex(&mut self.duplex, t);
                    recv_duplex(&mut self.duplex)
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
                    let word = &self.lines.word;
                    // Acquire/Release: pair with the parent's store and load.
                    spin_until(|| (word.load(Acquire) == 2 * t - 1).then_some(()));
                    word.store(2 * t, Release);
                }
                Trip::TwoLines => {
                    // Acquire: pairs with the parent's Release store.
                    spin_until(|| (self.lines.ping.load(Acquire) == t).then_some(()));
                    // Release: pairs with the parent's Acquire load.
                    self.lines.pong.store(t, Release);
                }
                Trip::Duplex => {
                    let v = recv_duplex(&mut self.duplex);
                    send_duplex(&mut self.duplex, v);
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
    /// One word per direction, alternating.
    pub two_lines: Stats,
    /// Our duplex channel, alternating.
    pub duplex: Stats,
    /// Ours, alternating.
    pub ours: Stats,
    /// The hand-tuned ring, alternating.
    pub hand: Stats,
    /// The floor alone, after.
    pub after: Stats,
}

/// Forks the child, walks `steps` on both sides, and returns each
/// bucket's samples in seconds per round trip (0: before, 1..=5: the
/// alternating cases, 6: after).
///
/// # Panics
///
/// If a mapping, a ring, the pinning or the child fails.
fn drive(steps: Vec<(Trip, Bucket)>, cpus: (usize, usize)) -> Vec<Option<Stats>> {
    let lines = Arc::new(SharedMap::<Lines>::new().expect("map the floor's lines"));
    let (ours_a, ours_a_rx) = spsc::channel::<u64>(SLOTS).expect("create a ring");
    let (ours_b_tx, ours_b) = spsc::channel::<u64>(SLOTS).expect("create a ring");
    let (hand_a, hand_a_rx) = hand_ring::channel::<SLOTS>().expect("map a hand-tuned ring");
    let (hand_b_tx, hand_b) = hand_ring::channel::<SLOTS>().expect("map a hand-tuned ring");
    let (duplex_a, duplex_b) = duplex::channel::<u64, u64>(SLOTS).expect("create a duplex channel");
    let mut child_side = Side {
        lines: Arc::clone(&lines),
        duplex: duplex_b,
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
        duplex: duplex_a,
        ours_tx: ours_a,
        ours_rx: ours_b,
        hand_tx: hand_a,
        hand_rx: hand_b,
        turn: 0,
    };
    let pin = crate::harness::affinity::pin_to(cpus.0).expect("pin the parent");
    let mut buckets: [Vec<Duration>; 7] = Default::default();
    for (case, bucket) in steps {
        let t = Instant::now();
        me.ask(case);
        let dt = t.elapsed();
        let slot = match bucket {
            Bucket::Warm => continue,
            Bucket::Before => 0,
            Bucket::Alternating(k) => 1 + k,
            Bucket::After => 6,
        };
        buckets[slot].push(dt);
    }
    drop(pin);
    assert_eq!(child.join().expect("join the ring child"), 0, "the ring child failed");
    let per_trip = 1.0 / f64::from(TRIPS);
    (buckets.iter())
        .map(|b| Stats::from_durations(b).map(|s| s.scaled(per_trip)))
        .collect()
}

/// Measures the floor alone, the five cases alternating, the floor alone.
///
/// # Panics
///
/// If a mapping, a ring, the pinning or the child fails.
pub fn measure(mode: Mode, cpus: (usize, usize)) -> Trips {
    let (n, w) = (mode.scale(300), mode.warmup(20));
    let s = drive(plan(n, w), cpus);
    let s = |k: usize| s[k].expect("n > 0 blocks");
    Trips {
        before: s(0),
        floor: s(1),
        two_lines: s(2),
        duplex: s(3),
        ours: s(4),
        hand: s(5),
        after: s(6),
    }
}

/// The cache-line floor alone, a few milliseconds of it: a probe of the
/// machine's mode (`MACHINE.md`: it may turn several times slower at
/// random), taken before and after groups that have no floor of their own.
///
/// # Panics
///
/// If a mapping, a ring, the pinning or the child fails.
pub fn floor_probe(mode: Mode, cpus: (usize, usize)) -> Stats {
    let (n, w) = (mode.scale(50), mode.warmup(5));
    let mut steps = vec![(Trip::Floor, Bucket::Warm); w];
    steps.extend(vec![(Trip::Floor, Bucket::Before); n]);
    drive(steps, cpus)[0].expect("n > 0 blocks")
}
