//! The two drivers of the peer rows: round trips ([`round_trips`]) and
//! one-way streams ([`flows`]), between two processes (a forked child) or
//! two threads, pinned one per CPU.
//!
//! Both sides build their ends of every case first (see
//! [`crate::peers::ends`]), meet, connect them, meet again, then walk the
//! same plan:
//! warm-up blocks, then rounds in which every case runs one block in turn,
//! so that a slow phase of the machine hits every case alike.
//!
//! - A round-trip block is timed whole (a sample is its mean: no timer
//!   inside) and then once more with a timer around every round trip (the
//!   samples of the latency percentiles; the timer adds a few tens of ns).
//! - A stream block starts when the receiver gives the word: the sender
//!   waits for it, so that no case finds messages queued before its clock
//!   starts. A sample is the block's messages per second.
//!
//! # Memory ordering
//!
//! The meeting words and the go word are stored with Release and read
//! with Acquire; the ends order their own messages.

use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmproc::Process;

use crate::groups::ring::{float, fork_pinned};
use crate::harness::affinity::pin_to;
use crate::harness::shared_map::{AtomicU64, Padded, SharedMap};
use crate::harness::stats::Stats;
use crate::peers::ends::{Drain, DrainEnd, Echo, EchoEnd, Feed, FeedEnd};
use crate::peers::hand_ring::spin_until;

/// Where the other side runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A forked child process.
    Process,
    /// A thread of this process.
    Thread,
}

/// The other side, running.
enum Running {
    Process(Process),
    Thread(JoinHandle<()>),
}

impl Running {
    fn join(self) {
        match self {
            Self::Process(p) => {
                let code = p.join().expect("join the peer child");
                assert_eq!(code, 0, "the peer child failed");
            }
            Self::Thread(t) => t.join().expect("the peer thread panicked"),
        }
    }
}

/// Runs `f(ends)` on `cpu` in a forked child or a thread.
///
/// A forked child's closure stays in the parent's `Process` until it is
/// dropped; the ends travel in a slot instead, which the parent empties
/// right after the fork, so that it keeps no copy of the child's pipe and
/// socket ends (a child that dies then leaves end-of-file behind, not a
/// reader blocked for ever).
fn launch<T: Send + 'static>(peer: Peer, cpu: usize, ends: T, f: impl FnOnce(T) + Send + 'static) -> Running {
    match peer {
        Peer::Thread => Running::Thread(std::thread::spawn(move || {
            let _pin = pin_to(cpu).expect("pin the peer thread");
            f(ends);
        })),
        Peer::Process => {
            let slot = Arc::new(Mutex::new(Some(ends)));
            let theirs = Arc::clone(&slot);
            let child = fork_pinned(cpu, move || {
                let ends = theirs.lock().unwrap_or_else(PoisonError::into_inner).take();
                f(ends.expect("the ends are in their slot"));
            });
            drop(slot.lock().unwrap_or_else(PoisonError::into_inner).take());
            Running::Process(child)
        }
    }
}

/// Where the two sides meet: each side's stage of the start (1: ends
/// built, 2: ends connected), and the receiver's go word for stream
/// blocks.
struct Line(SharedMap<[Padded<AtomicU64>; 3]>);

/// The asking or receiving side (this thread).
const HERE: usize = 0;
/// The other side.
const THERE: usize = 1;
/// The go word.
const GO: usize = 2;

impl Line {
    fn new() -> Arc<Self> {
        Arc::new(Self(SharedMap::new().expect("map the start line")))
    }

    /// Waits until word `w` reads at least `k`.
    fn wait(&self, w: usize, k: u64) {
        // Acquire: pairs with the Release stores of `meet` and `go`.
        spin_until(|| (self.0[w].load(Acquire) >= k).then_some(()));
    }

    /// Marks side `me` at stage `k` and waits until the other side is there.
    fn meet(&self, me: usize, k: u64) {
        // Release: pairs with the Acquire in the other side's `wait`.
        self.0[me].store(k, Release);
        self.wait(1 - me, k);
    }

    /// Tells the sender to start block `k`.
    fn go(&self, k: u64) {
        // Release: pairs with the Acquire in the sender's `wait`.
        self.0[GO].store(k, Release);
    }

    /// Takes side `me` through the start: both sides have built their
    /// ends, then both have connected them.
    fn start<T>(&self, me: usize, ends: &mut [T], connect: impl Fn(&mut T)) {
        self.meet(me, 1);
        ends.iter_mut().for_each(connect);
        self.meet(me, 2);
    }
}

/// What a block is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Warm,
    Mean,
    Each,
}

/// A case's round trips: the block means, and every timed round trip.
#[derive(Clone, Debug)]
pub struct Trips {
    /// Seconds per round trip, one sample per block.
    pub mean: Stats,
    /// Seconds of each round trip timed alone, sorted.
    pub each: Vec<f64>,
}

/// A round-trip case: its asking and answering ends and its round trips
/// per block.
pub type TripCase = (EchoEnd, EchoEnd, u32);

/// Runs `cases` (`n` rounds after `w` warm-up blocks each) between this
/// thread on `cpus.0` and a peer on `cpus.1`.
///
/// # Panics
///
/// If an end, the pinning or the peer fails, or an answer is wrong.
pub fn round_trips(peer: Peer, cpus: (usize, usize), cases: Vec<TripCase>, n: usize, w: usize) -> Vec<Trips> {
    let trips: Vec<u32> = cases.iter().map(|c| c.2).collect();
    let mut steps: Vec<(usize, Block)> = (0..cases.len()).flat_map(|c| vec![(c, Block::Warm); w]).collect();
    for _ in 0..n {
        steps.extend((0..cases.len()).flat_map(|c| [(c, Block::Mean), (c, Block::Each)]));
    }
    let (askers, answerers): (Vec<EchoEnd>, Vec<EchoEnd>) = cases.into_iter().map(|(a, b, _)| (a, b)).unzip();
    let line = Line::new();
    let (child_line, child_steps, child_trips) = (Arc::clone(&line), steps.clone(), trips.clone());
    let other = launch(peer, cpus.1, answerers, move |ends| {
        let mut ends: Vec<Box<dyn Echo>> = ends.into_iter().map(|e| e()).collect();
        child_line.start(THERE, &mut ends, |e| e.connect());
        for (c, _) in child_steps {
            (0..child_trips[c]).for_each(|_| ends[c].answer());
        }
    });
    let pin = pin_to(cpus.0).expect("pin the asking side");
    let mut ends: Vec<Box<dyn Echo>> = askers.into_iter().map(|e| e()).collect();
    line.start(HERE, &mut ends, |e| e.connect());
    let mut turns = vec![0u64; ends.len()];
    let mut means: Vec<Vec<Duration>> = vec![Vec::new(); ends.len()];
    let mut each: Vec<Vec<f64>> = vec![Vec::new(); ends.len()];
    for (c, block) in steps {
        let mut ask = |timed: bool| {
            turns[c] += 1;
            let t = turns[c];
            let clock = timed.then(Instant::now);
            let got = ends[c].ask(t);
            let dt = clock.map(|c| c.elapsed());
            assert_eq!(got, t, "case {c}: the answer is not the question");
            dt
        };
        match block {
            Block::Warm => (0..trips[c]).for_each(|_| {
                ask(false);
            }),
            Block::Mean => {
                let clock = Instant::now();
                (0..trips[c]).for_each(|_| {
                    ask(false);
                });
                means[c].push(clock.elapsed());
            }
            Block::Each => {
                each[c].extend((0..trips[c]).filter_map(|_| ask(true).map(|d| d.as_secs_f64())));
            }
        }
    }
    drop(ends);
    drop(pin);
    other.join();
    (means.iter().zip(each).zip(trips))
        .map(|((m, mut e), t)| {
            e.sort_by(f64::total_cmp);
            let mean = Stats::from_durations(m).expect("n > 0 blocks");
            Trips {
                mean: mean.scaled(1.0 / f64::from(t)),
                each: e,
            }
        })
        .collect()
}

/// A one-way case: its sending and receiving ends and its messages per
/// block.
pub type FlowCase = (FeedEnd, DrainEnd, u64);

/// Runs `cases` (`n` rounds after `w` warm-up blocks each): the peer on
/// `cpus.1` sends, this thread on `cpus.0` receives, checks and times.
/// Returns messages per second per case.
///
/// # Panics
///
/// If an end, the pinning or the peer fails, or a message arrives damaged.
pub fn flows(peer: Peer, cpus: (usize, usize), cases: Vec<FlowCase>, n: usize, w: usize) -> Vec<Stats> {
    let counts: Vec<u64> = cases.iter().map(|c| c.2).collect();
    let mut steps: Vec<(usize, bool)> = (0..cases.len()).flat_map(|c| vec![(c, false); w]).collect();
    for _ in 0..n {
        steps.extend((0..cases.len()).map(|c| (c, true)));
    }
    let (feeds, drains): (Vec<FeedEnd>, Vec<DrainEnd>) = cases.into_iter().map(|(f, d, _)| (f, d)).unzip();
    let line = Line::new();
    let (child_line, child_steps, child_counts) = (Arc::clone(&line), steps.clone(), counts.clone());
    let other = launch(peer, cpus.1, feeds, move |ends| {
        let mut ends: Vec<Box<dyn Feed>> = ends.into_iter().map(|e| e()).collect();
        let mut next = vec![0u64; ends.len()];
        child_line.start(THERE, &mut ends, |e| e.connect());
        for (k, (c, _)) in (1..).zip(child_steps) {
            child_line.wait(GO, k);
            ends[c].send(next[c], child_counts[c]);
            next[c] += child_counts[c];
        }
    });
    let pin = pin_to(cpus.0).expect("pin the receiving side");
    let mut ends: Vec<Box<dyn Drain>> = drains.into_iter().map(|e| e()).collect();
    line.start(HERE, &mut ends, |e| e.connect());
    let mut next = vec![0u64; ends.len()];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); ends.len()];
    for (k, (c, timed)) in (1..).zip(steps) {
        line.go(k);
        let clock = Instant::now();
        let wrong = ends[c].receive(next[c], counts[c]);
        let dt = clock.elapsed();
        assert_eq!(wrong, 0, "case {c}: messages arrived damaged or out of order");
        next[c] += counts[c];
        if timed {
            samples[c].push(dt);
        }
    }
    drop(ends);
    drop(pin);
    other.join();
    (samples.iter().zip(counts))
        .map(|(s, m)| {
            let s = Stats::from_durations(s).expect("n > 0 blocks");
            s.per_second(float(m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::ends::{crossbeam_echo, crossbeam_flow, floor};

    #[test]
    fn drivers_walk_every_case_between_threads() {
        let cpus = match crate::harness::affinity::allowed_cpus().as_deref() {
            Ok([a, b, ..]) => (*a, *b),
            _ => return, // one CPU: the benchmark skips these rows too
        };
        let (fa, fb) = floor().expect("map");
        let (ca, cb) = crossbeam_echo(4, true);
        let t = round_trips(Peer::Thread, cpus, vec![(fa, fb, 5), (ca, cb, 3)], 2, 1);
        assert_eq!((t[0].mean.n, t[0].each.len(), t[1].each.len()), (2, 10, 6));
        let (f, d) = crossbeam_flow(4, true);
        let r = flows(Peer::Thread, cpus, vec![(f, d, 50)], 3, 1);
        assert_eq!(r[0].n, 3);
    }
}
