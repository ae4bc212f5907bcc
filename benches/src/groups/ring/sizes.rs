//! Messages per second through `shmproc::spsc` rings of large messages, one
//! producer process and one consumer process pinned one per CPU, for
//! payloads of 64 B, 4 KiB, 64 KiB and 1 MiB (`[u64; K]`, ring capacity
//! [`SLOTS`]), by four paths:
//!
//! - loan, untouched: `try_reserve()` + `commit()`, `try_peek()` + drop;
//! - loan, write+read: the producer writes every word of the lent slot,
//!   the consumer adds up every word of the slot it peeks;
//! - copy, write+read: the producer writes every word of a private buffer
//!   and `try_send`s a copy of it, the consumer `try_recv`s a copy and adds
//!   it up: the by-value path of the API, the copy path of the comparison;
//! - memcpy copy, write+read: the same through loans with plain copies
//!   (`*slot = *buf`, `*buf = *slot`): the least a copy in and out costs.
//!
//! The child produces, the parent consumes and times; both walk the same
//! plan (warm-up blocks, then every size and path alternating block by
//! block). Message `s` holds `s` in every word, so the consumer checks each
//! sum. A large value passed by value lives on the stack a few times over,
//! so both sides run on a thread with a [`STACK`]-byte stack.

use std::time::{Duration, Instant};

use shmproc::ShmSafe;
use shmproc::spsc::{self, Consumer, Producer};
use shmproc::{TryRecvError, TrySendError};

use crate::Mode;
use crate::groups::ring::fork_pinned;
use crate::harness::stats::Stats;
use crate::peers::hand_ring::spin_until;

/// Slots per ring.
pub const SLOTS: usize = 8;
/// Stack of the threads that move messages.
pub const STACK: usize = 64 << 20;
/// Payload sizes in bytes, in report order.
pub const SIZES: [usize; 4] = [64, 4096, 64 << 10, 1 << 20];

/// Largest payload sent by value (`try_send`/`try_recv`): all of them.
pub const BY_VALUE_MAX: usize = 1 << 20;

/// How a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Loans, the payload untouched.
    LoanBare,
    /// Loans, every word written and read.
    LoanTouched,
    /// `try_send`/`try_recv` by value, every word written and read.
    Copy,
    /// Loans with a plain copy in and out, every word written and read.
    Memcpy,
}

/// Every path, in report order.
pub const PATHS: [Path; 4] = [Path::LoanBare, Path::LoanTouched, Path::Copy, Path::Memcpy];

/// Whether `path` runs for a payload of `bytes`.
pub fn runs(path: Path, bytes: usize) -> bool {
    path != Path::Copy || bytes <= BY_VALUE_MAX
}

/// The sum of a message whose words all hold `s`.
fn expected(s: u64, words: usize) -> u64 {
    s.wrapping_mul(words as u64)
}

fn sum(words: &[u64]) -> u64 {
    words.iter().fold(0, |a, &w| a.wrapping_add(w))
}

/// The producer's end of one size.
trait Feed: Send {
    fn send(&mut self, path: Path, m: u64);
}

/// The consumer's end of one size; returns the block's time.
trait Drain: Send {
    fn receive(&mut self, path: Path, m: u64) -> Duration;
}

/// Pushes a copy of a message by value; false when the ring is full.
type PushCopy<const K: usize> = fn(&mut Producer<[u64; K]>, &[u64; K]) -> bool;
/// Pops a message by value and adds it up; `None` when the ring is empty.
type PopCopy<const K: usize> = fn(&mut Consumer<[u64; K]>) -> Option<u64>;

struct Tx<const K: usize> {
    ring: Producer<[u64; K]>,
    buf: Box<[u64; K]>,
    next: u64,
    push_copy: Option<PushCopy<K>>,
}

struct Rx<const K: usize> {
    ring: Consumer<[u64; K]>,
    buf: Box<[u64; K]>,
    next: u64,
    pop_copy: Option<PopCopy<K>>,
}

fn push_copy<const K: usize>(ring: &mut Producer<[u64; K]>, msg: &[u64; K]) -> bool
where
    [u64; K]: ShmSafe,
{
    match ring.try_send(*msg) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => false,
        Err(e) => panic!("push: {e}"),
    }
}

fn pop_copy<const K: usize>(ring: &mut Consumer<[u64; K]>) -> Option<u64>
where
    [u64; K]: ShmSafe,
{
    match ring.try_recv() {
        Ok(msg) => Some(sum(&msg)),
        Err(TryRecvError::Empty) => None,
        Err(e) => panic!("pop: {e}"),
    }
}

impl<const K: usize> Feed for Tx<K>
where
    [u64; K]: ShmSafe,
{
    fn send(&mut self, path: Path, m: u64) {
        for s in self.next..self.next + m {
            match path {
                Path::LoanBare => spin_until(|| self.ring.try_reserve().ok().map(shmproc::spsc::SendLoan::commit)),
                Path::LoanTouched => spin_until(|| {
                    self.ring.try_reserve().ok().map(|mut slot| {
                        slot.fill(s);
                        slot.commit();
                    })
                }),
                Path::Copy => {
                    let push = self.push_copy.expect("a size sent by value");
                    self.buf.fill(s);
                    spin_until(|| push(&mut self.ring, &self.buf).then_some(()));
                }
                Path::Memcpy => {
                    self.buf.fill(s);
                    spin_until(|| {
                        self.ring.try_reserve().ok().map(|mut slot| {
                            *slot = *self.buf;
                            slot.commit();
                        })
                    });
                }
            }
        }
        self.next += m;
    }
}

impl<const K: usize> Drain for Rx<K>
where
    [u64; K]: ShmSafe,
{
    fn receive(&mut self, path: Path, m: u64) -> Duration {
        let mut wrong = 0u64;
        let t = Instant::now();
        for s in self.next..self.next + m {
            let got = match path {
                Path::LoanBare => {
                    spin_until(|| self.ring.try_peek().ok().map(drop));
                    continue;
                }
                Path::LoanTouched => spin_until(|| self.ring.try_peek().ok().map(|slot| sum(&*slot))),
                Path::Copy => {
                    let pop = self.pop_copy.expect("a size sent by value");
                    spin_until(|| pop(&mut self.ring))
                }
                Path::Memcpy => {
                    spin_until(|| self.ring.try_peek().ok().map(|slot| *self.buf = *slot));
                    sum(&*self.buf)
                }
            };
            wrong += u64::from(got != expected(s, K));
        }
        let dt = t.elapsed();
        assert_eq!(wrong, 0, "{path:?}, {} B: messages arrived damaged", K * 8);
        self.next += m;
        dt
    }
}

/// A ring of `[u64; K]` and its two ends, boxed for the plan; `copy` is
/// the by-value path, if this size has one (named at the call site so that
/// `try_recv` is instantiated only for the sizes that have it).
fn ends<const K: usize>(copy: Option<(PushCopy<K>, PopCopy<K>)>) -> (Box<dyn Feed>, Box<dyn Drain>)
where
    [u64; K]: ShmSafe,
{
    let (tx, rx) = spsc::channel::<[u64; K]>(SLOTS).expect("create a ring");
    let buf = || vec![0u64; K].into_boxed_slice().try_into().expect("K words");
    let tx = Tx {
        ring: tx,
        buf: buf(),
        next: 0,
        push_copy: copy.map(|c| c.0),
    };
    let rx = Rx {
        ring: rx,
        buf: buf(),
        next: 0,
        pop_copy: copy.map(|c| c.1),
    };
    (Box::new(tx), Box::new(rx))
}

/// Messages per block for a payload of `bytes`: about 16 MiB.
pub fn block(mode: Mode, bytes: usize, path: Path) -> u64 {
    if mode == Mode::Smoke {
        return 4;
    }
    // Untouched loans move no payload: as many messages as the smallest
    // size gets, so a block's start-up is spread as thin at every size.
    let moved = if path == Path::LoanBare { 64 } else { bytes.max(1) };
    ((16 << 20) / moved as u64).clamp(32, 20_000)
}

/// The blocks in order (size index, path, sample slot), `None` marking
/// warm-up.
fn plan(n: usize, w: usize) -> Vec<(usize, Path, Option<usize>)> {
    let each = || {
        (0..SIZES.len())
            .flat_map(|z| PATHS.iter().enumerate().map(move |(k, &p)| (z, p, z * PATHS.len() + k)))
            .filter(|&(z, p, _)| runs(p, SIZES[z]))
    };
    let mut steps: Vec<_> = each().flat_map(|(z, p, _)| vec![(z, p, None); w]).collect();
    for _ in 0..n {
        steps.extend(each().map(|(z, p, k)| (z, p, Some(k))));
    }
    steps
}

/// Runs `f` on a thread with a [`STACK`]-byte stack (pinned as the caller).
fn big_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        let t = std::thread::Builder::new().stack_size(STACK).spawn_scoped(s, f);
        t.expect("start a thread").join().expect("the mover thread panicked")
    })
}

/// Messages per second for each size (in [`SIZES`] order) and path (in
/// [`PATHS`] order; `None` where the path does not run).
///
/// # Panics
///
/// If a ring, the pinning, the child or a thread fails.
pub fn measure(mode: Mode, cpus: (usize, usize)) -> Vec<[Option<Stats>; 4]> {
    let (n, w) = (mode.scale(30), mode.warmup(2));
    let pairs = [
        ends::<8>(Some((push_copy, pop_copy))),
        ends::<512>(Some((push_copy, pop_copy))),
        ends::<8192>(Some((push_copy, pop_copy))),
        ends::<131_072>(Some((push_copy, pop_copy))),
    ];
    let (mut feeds, mut drains): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let steps = plan(n, w);
    let child_steps = steps.clone();
    let child = fork_pinned(cpus.1, move || {
        big_stack(|| {
            for (z, path, _) in child_steps {
                feeds[z].send(path, block(mode, SIZES[z], path));
            }
        });
    });
    let pin = crate::harness::affinity::pin_to(cpus.0).expect("pin the parent");
    let mut samples = vec![Vec::new(); SIZES.len() * PATHS.len()];
    big_stack(|| {
        for (z, path, slot) in steps {
            let dt = drains[z].receive(path, block(mode, SIZES[z], path));
            if let Some(k) = slot {
                samples[k].push(dt);
            }
        }
    });
    drop(pin);
    assert_eq!(child.join().expect("join the ring child"), 0, "the ring child failed");
    (0..SIZES.len())
        .map(|z| {
            let rate = |p: usize| {
                let s = Stats::from_durations(&samples[z * PATHS.len() + p])?;
                Some(s.per_second(crate::groups::ring::float(block(mode, SIZES[z], PATHS[p]))))
            };
            [rate(0), rate(1), rate(2), rate(3)]
        })
        .collect()
}
