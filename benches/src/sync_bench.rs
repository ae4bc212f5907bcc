//! Lock rows: shm's `Lock` against a bare futex mutex and glibc's
//! process-shared pthread mutexes ([`crate::raw_sync`]), uncontended and
//! with two processes contending; locked increments of a shared value
//! against Python's `multiprocessing.Value` (`python/sync_value.py`); and
//! the futex ping-pong floor that later Event/Condition rows compare with.
//!
//! - Uncontended: one thread, batches of [`BATCH`] lock+unlock pairs per
//!   sample, reported per pair.
//! - Contended: two forked children (`Process::from_closure`) each do `ops`
//!   lock/increment/unlock. They start together on a shared go flag and
//!   stamp `CLOCK_MONOTONIC` when they start and finish; a run lasts from
//!   the first start to the last finish, so process start and exit are not
//!   counted (Python's script measures the same way). Fairness is the first
//!   finisher's time over the last's: 1.0 when both end together, 0.5 when
//!   one child ran all its ops before the other got going.
//! - Cases compared in a row alternate call by call (rounds = n).

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use shm::{Lock, Process, RawValue};

use crate::raw_sync::{
    AtomicU32, AtomicU64, FutexMutex, Padded, PingPong, PthreadMutex, SharedMap, ZeroShared,
};
use crate::report::{Measured, Report, Row, Target};
use crate::stats::{Case, Stats, Unit, time_interleaved, time_n};
use crate::svg::{Chart, Kind};
use crate::{Mode, python};

/// Lock+unlock pairs per uncontended sample.
pub const BATCH: u32 = 10_000;
/// Children in a contended run.
const KIDS: usize = 2;

/// The raw peers and the counter they guard, each in its own mapping.
#[derive(Debug)]
pub struct Peers {
    futex: SharedMap<FutexMutex>,
    pthread: SharedMap<PthreadMutex>,
    robust: SharedMap<PthreadMutex>,
    counter: SharedMap<Padded<AtomicU64>>,
    board: SharedMap<Board>,
}

impl Peers {
    /// Maps and initialises everything.
    ///
    /// # Errors
    ///
    /// If a mapping or a pthread call fails.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            futex: SharedMap::new()?,
            pthread: PthreadMutex::shared(false)?,
            robust: PthreadMutex::shared(true)?,
            counter: SharedMap::new()?,
            board: SharedMap::new()?,
        })
    }

    /// The increment done under a lock: a plain read and write (Relaxed:
    /// the lock orders it), as `v.set(v.get() + 1)` would be.
    #[inline]
    fn bump(&self) {
        self.counter.store(self.counter.load(Relaxed) + 1, Relaxed);
    }
}

/// `s` with every number multiplied by `k` (per batch -> per op).
fn scaled(s: Stats, k: f64) -> Stats {
    Stats {
        median: s.median * k,
        p10: s.p10 * k,
        p90: s.p90 * k,
        ..s
    }
}

/// Seconds per run of `ops` operations -> operations per second.
fn rate(s: Stats, ops: f64) -> Stats {
    Stats {
        median: ops / s.median,
        p10: ops / s.p90,
        p90: ops / s.p10,
        unit: Unit::PerSecond,
        ..s
    }
}

fn median(v: &mut [f64]) -> f64 {
    Stats::from_samples(v, Unit::Seconds).map_or(f64::NAN, |s| s.median)
}

/// Operations per child in contended runs.
fn ops_per_child(mode: Mode, full: u32) -> u32 {
    if mode == Mode::Smoke { full / 200 } else { full }
}

/// Uncontended lock+unlock, per pair: ours (guard, acquire/release), the
/// futex floor, pthread, robust pthread.
fn uncontended(mode: Mode, lock: &Lock, p: &Peers) -> Vec<Stats> {
    let (n, w) = (mode.scale(500), mode.warmup(50));
    let mut cases = [
        Case::new(n, w, || {
            for _ in 0..BATCH {
                drop(lock.lock().expect("no holder dies"));
            }
        }),
        Case::new(n, w, || {
            for _ in 0..BATCH {
                assert!(lock.acquire(true, None).expect("no holder dies"));
                lock.release().expect("held");
            }
        }),
        Case::new(n, w, || {
            for _ in 0..BATCH {
                p.futex.lock();
                p.futex.unlock();
            }
        }),
        Case::new(n, w, || {
            for _ in 0..BATCH {
                p.pthread.lock();
                p.pthread.unlock();
            }
        }),
        Case::new(n, w, || {
            for _ in 0..BATCH {
                p.robust.lock();
                p.robust.unlock();
            }
        }),
    ];
    let per_op = 1.0 / f64::from(BATCH);
    time_interleaved(n, &mut cases).into_iter().map(|s| scaled(s, per_op)).collect()
}

/// Two children contending, seconds per run, with each case's median fairness.
fn contended(mode: Mode, lock: &Lock, peers: &Arc<Peers>, ops: u32) -> Vec<(Stats, f64)> {
    let (n, w) = (mode.scale(20), mode.warmup(2));
    let mut fair: [Vec<f64>; 4] = Default::default();
    let [f_ours, f_futex, f_pthread, f_robust] = &mut fair;
    let case = |f: &'static dyn Fn(&Peers, &Lock), fair: &mut Vec<f64>| {
        let (peers, lock) = (Arc::clone(peers), lock.clone());
        Case::timed(n, w, move || {
            peers.counter.store(0, Relaxed);
            let (p, l) = (Arc::clone(&peers), lock.clone());
            let run = contend(&peers, ops, move || f(&p, &l));
            // Relaxed: the children have been reaped.
            assert_eq!(peers.counter.load(Relaxed), 2 * u64::from(ops), "the lock let an increment slip");
            fair.push(run.fairness);
            run.elapsed
        })
    };
    let mut cases = [
        case(
            &|p, l| {
                let _g = l.lock().expect("no holder dies");
                p.bump();
            },
            f_ours,
        ),
        case(
            &|p, _| {
                p.futex.lock();
                p.bump();
                p.futex.unlock();
            },
            f_futex,
        ),
        case(
            &|p, _| {
                p.pthread.lock();
                p.bump();
                p.pthread.unlock();
            },
            f_pthread,
        ),
        case(
            &|p, _| {
                p.robust.lock();
                p.bump();
                p.robust.unlock();
            },
            f_robust,
        ),
    ];
    let stats = time_interleaved(n, &mut cases);
    drop(cases);
    stats.into_iter().zip(fair.iter_mut().map(|f| median(f))).collect()
}

/// Ours: `{ let _g = lock.lock(); v.set(v.get() + 1) }` in two children.
fn locked_value(mode: Mode, lock: &Lock, peers: &Arc<Peers>, ops: u32) -> (Stats, f64) {
    let (n, w) = (mode.scale(20), mode.warmup(2));
    let v = RawValue::new(0u64).expect("create a RawValue");
    let mut fair = Vec::new();
    let mut cases = [Case::timed(n, w, || {
        v.set(0);
        let (l, v2) = (lock.clone(), v.clone());
        let run = contend(peers, ops, move || {
            let _g = l.lock().expect("no holder dies");
            v2.set(v2.get() + 1);
        });
        assert_eq!(v.get(), 2 * u64::from(ops), "the lock let an increment slip");
        fair.push(run.fairness);
        run.elapsed
    })];
    let s = time_interleaved(n, &mut cases)[0];
    drop(cases);
    (s, median(&mut fair))
}

/// The futex ping-pong floor: seconds per round trip.
fn ping_pong(mode: Mode) -> Stats {
    let (n, w) = (mode.scale(2000), mode.warmup(100));
    let pp = Arc::new(SharedMap::<PingPong>::new().expect("map the ping-pong words"));
    let turns = u32::try_from(n + w).expect("a few thousand turns");
    let child = {
        let pp = Arc::clone(&pp);
        Process::from_closure(move || pp.serve(turns))
    };
    child.start().expect("start the ping-pong child");
    let mut i = 0;
    let s = time_n(n, w, || {
        i += 1;
        pp.round_trip(i);
    });
    assert_eq!(child.join().expect("join the ping-pong child"), 0, "ping-pong child failed");
    s
}

include!("sync_rows.rs");
