//! One-way `u64` throughput from a producer process to a consumer process,
//! pinned one per CPU: `shmproc::spsc` one message at a time
//! (`try_send`/`try_recv`, spinning on full/empty) and in batches of
//! [`BATCH`] (`try_send_slice`/`try_recv_slice`, one publication per batch), against
//! the hand-tuned ring ([`crate::peers::hand_ring`]) doing the same; and
//! `shmproc::mpmc` one message at a time beside them (one producer, one
//! consumer: what its per-slot sequence numbers and claims cost).
//!
//! The forked child produces, the parent consumes and times. Both walk the
//! same plan: warm-up blocks, then the four cases alternating block by
//! block. A block is a run of messages; its sample is messages per second.
//! The consumer adds up what it receives and checks the sum at the end of
//! each block. Every ring holds 4096 `u64`.

use std::time::{Duration, Instant};

use shmproc::mpmc::{self, Mpmc};
use shmproc::spsc::{self, Consumer, Producer};
use shmproc::{TryRecvError, TrySendError};

use crate::Mode;
use crate::groups::ring::trips::{pop_ours, push_ours};
use crate::groups::ring::{self, fork_pinned};
use crate::harness::stats::Stats;
use crate::peers::hand_ring::{self, CAP, HandRx, HandTx, spin_until};

/// Messages per batch in the batched cases.
pub const BATCH: usize = 16;

/// The cases, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Ours, one message per call.
    Ours,
    /// The hand-tuned ring, one message per publication.
    Hand,
    /// Ours, `try_send_slice`/`try_recv_slice` of up to [`BATCH`].
    OursBatched,
    /// The hand-tuned ring, one publication per batch of up to [`BATCH`].
    HandBatched,
    /// Ours, the MPMC ring, one message per call.
    Mpmc,
}

/// Every case, in report order.
pub const FLOWS: [Flow; 5] = [Flow::Ours, Flow::Hand, Flow::OursBatched, Flow::HandBatched, Flow::Mpmc];

/// Messages per block.
pub fn block(mode: Mode) -> u64 {
    if mode == Mode::Smoke { 20_000 } else { 500_000 }
}

/// The producer's ends.
struct Tx {
    ours: Producer<u64>,
    ours_batched: Producer<u64>,
    hand: HandTx<CAP>,
    hand_batched: HandTx<CAP>,
    mpmc: Mpmc<u64>,
    /// The next value of each case.
    next: [u64; 5],
}

/// The consumer's ends.
struct Rx {
    ours: Consumer<u64>,
    ours_batched: Consumer<u64>,
    hand: HandRx<CAP>,
    hand_batched: HandRx<CAP>,
    mpmc: Mpmc<u64>,
    next: [u64; 5],
}

/// `0 + 1 + ... + (v - 1)`, wrapping: what a block starting at `from`
/// adds up to is `sum_below(from + m) - sum_below(from)`.
fn sum_below(v: u64) -> u64 {
    let (even, other) = if v.is_multiple_of(2) {
        (v / 2, v.wrapping_sub(1))
    } else {
        (v, (v - 1) / 2)
    };
    even.wrapping_mul(other)
}

fn index(f: Flow) -> usize {
    FLOWS.iter().position(|&x| x == f).expect("a listed case")
}

impl Tx {
    /// Sends `count` messages of case `flow`.
    fn send(&mut self, flow: Flow, count: u64) {
        let from = self.next[index(flow)];
        let end = from + count;
        match flow {
            Flow::Ours => (from..end).for_each(|v| push_ours(&mut self.ours, v)),
            Flow::Hand => (from..end).for_each(|v| spin_until(|| self.hand.try_push(v).then_some(()))),
            Flow::Mpmc => (from..end).for_each(|v| {
                spin_until(|| match self.mpmc.try_put(v) {
                    Ok(()) => Some(()),
                    Err(TrySendError::Full(_)) => None,
                    Err(e) => panic!("mpmc push: {e}"),
                });
            }),
            Flow::OursBatched | Flow::HandBatched => {
                let mut buf = [0u64; BATCH];
                let mut first = from;
                while first < end {
                    let len = usize::try_from((end - first).min(BATCH as u64)).expect("at most BATCH");
                    for (word, v) in buf[..len].iter_mut().zip(first..) {
                        *word = v;
                    }
                    let sent = spin_until(|| {
                        let sent = if flow == Flow::OursBatched {
                            match self.ours_batched.try_send_slice(&buf[..len]) {
                                Ok(sent) => sent,
                                Err(TrySendError::Full(())) => 0,
                                Err(e) => panic!("try_send_slice: {e}"),
                            }
                        } else {
                            self.hand_batched.push_slice(&buf[..len])
                        };
                        (sent > 0).then_some(sent)
                    });
                    first += sent as u64;
                }
            }
        }
        self.next[index(flow)] = end;
    }
}

impl Rx {
    /// Receives `count` messages of case `flow`; returns the time it took.
    fn receive(&mut self, flow: Flow, count: u64) -> Duration {
        let from = self.next[index(flow)];
        let t = Instant::now();
        let mut sum = 0u64;
        match flow {
            Flow::Ours => (0..count).for_each(|_| sum = sum.wrapping_add(pop_ours(&mut self.ours))),
            Flow::Hand => (0..count).for_each(|_| sum = sum.wrapping_add(spin_until(|| self.hand.try_pop()))),
            Flow::Mpmc => (0..count).for_each(|_| {
                let v = spin_until(|| match self.mpmc.try_get() {
                    Ok(v) => Some(v),
                    Err(TryRecvError::Empty) => None,
                    Err(e) => panic!("mpmc pop: {e}"),
                });
                sum = sum.wrapping_add(v);
            }),
            Flow::OursBatched | Flow::HandBatched => {
                let mut buf = [0u64; BATCH];
                let mut left = count;
                while left > 0 {
                    let want = usize::try_from(left.min(BATCH as u64)).expect("at most BATCH");
                    let got = spin_until(|| {
                        let got = if flow == Flow::OursBatched {
                            match self.ours_batched.try_recv_slice(&mut buf[..want]) {
                                Ok(got) => got,
                                Err(TryRecvError::Empty) => 0,
                                Err(e) => panic!("try_recv_slice: {e}"),
                            }
                        } else {
                            self.hand_batched.pop_into(&mut buf[..want])
                        };
                        (got > 0).then_some(got)
                    });
                    sum = buf[..got].iter().fold(sum, |acc, &v| acc.wrapping_add(v));
                    left -= got as u64;
                }
            }
        }
        let dt = t.elapsed();
        let end = from + count;
        assert_eq!(
            sum,
            sum_below(end).wrapping_sub(sum_below(from)),
            "{flow:?} lost or mixed up messages"
        );
        self.next[index(flow)] = end;
        dt
    }
}

/// The blocks in order, `None` marking warm-up.
fn plan(n: usize, w: usize) -> Vec<(Flow, Option<usize>)> {
    let mut p: Vec<(Flow, Option<usize>)> = FLOWS.iter().flat_map(|&f| vec![(f, None); w]).collect();
    for _ in 0..n {
        p.extend(FLOWS.iter().enumerate().map(|(k, &f)| (f, Some(k))));
    }
    p
}

/// Messages per second of each case in [`FLOWS`] order, and the messages
/// each case moved in timed blocks.
///
/// # Panics
///
/// If a mapping, a ring, the pinning or the child fails.
pub fn measure(mode: Mode, cpus: (usize, usize)) -> (Vec<Stats>, u64) {
    let (n, w) = (mode.scale(100), mode.warmup(4));
    let m = block(mode);
    let ring = || spsc::channel::<u64>(CAP).expect("create a ring");
    let hand = || hand_ring::channel::<CAP>().expect("map a hand-tuned ring");
    let ((o_tx, o_rx), (ob_tx, ob_rx), (h_tx, h_rx), (hb_tx, hb_rx)) = (ring(), ring(), hand(), hand());
    let m_tx = mpmc::ring::<u64>(CAP).expect("create an MPMC ring");
    let m_rx = m_tx.clone();
    let steps = plan(n, w);
    let mut tx = Tx {
        ours: o_tx,
        ours_batched: ob_tx,
        hand: h_tx,
        hand_batched: hb_tx,
        mpmc: m_tx,
        next: [0; 5],
    };
    let child_steps = steps.clone();
    let child = fork_pinned(cpus.1, move || {
        for (f, _) in child_steps {
            tx.send(f, m);
        }
    });
    let mut rx = Rx {
        ours: o_rx,
        ours_batched: ob_rx,
        hand: h_rx,
        hand_batched: hb_rx,
        mpmc: m_rx,
        next: [0; 5],
    };
    let pin = crate::harness::affinity::pin_to(cpus.0).expect("pin the parent");
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for (f, slot) in steps {
        let dt = rx.receive(f, m);
        if let Some(k) = slot {
            samples[k].push(dt);
        }
    }
    drop(pin);
    assert_eq!(child.join().expect("join the ring child"), 0, "the ring child failed");
    let rates = samples
        .iter()
        .map(|s| {
            Stats::from_durations(s)
                .expect("n > 0 blocks")
                .per_second(ring::float(m))
        })
        .collect();
    (rates, m * n as u64)
}
