//! Lock rows: shm's `Lock` against a bare futex mutex and glibc's
//! process-shared pthread mutexes ([`crate::peers::raw_sync`]), uncontended and
//! with two processes contending; locked increments of a shared value
//! against Python's `multiprocessing.Value` (`python/sync_value.py`); and
//! the futex round-trip floor ([`crate::groups::ping_pong`]) that later
//! Event/Condition rows compare with.
//!
//! - Uncontended: one thread, batches of [`BATCH`] lock+unlock pairs per
//!   sample, reported per pair.
//! - Contended: two forked children each do `ops` lock/increment/unlock,
//!   timed from the first start to the last finish ([`crate::harness::contend`]),
//!   reported as operations per second, with fairness in a note.
//! - Cases compared in a row alternate call by call (rounds = n).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use shmproc::{Lock, RawValue};

use crate::Mode;
use crate::groups::ping_pong;
use crate::harness::contend::{Contention, KIDS};
use crate::harness::plot::{Chart, Kind};
use crate::harness::python;
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::shared_map::{AtomicU64, Padded, SharedMap};
use crate::harness::stats::{Case, Stats, Unit, time_interleaved};
use crate::peers::raw_sync::{FutexMutex, PthreadMutex};

/// Lock+unlock pairs per uncontended sample.
pub const BATCH: u32 = 10_000;

/// The raw peers and the counter they guard, each in its own mapping.
#[derive(Debug)]
pub struct Peers {
    futex: SharedMap<FutexMutex>,
    pthread: SharedMap<PthreadMutex>,
    robust: SharedMap<PthreadMutex>,
    counter: SharedMap<Padded<AtomicU64>>,
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
        })
    }

    /// The increment done under a lock: a plain read and write (Relaxed:
    /// the lock orders it), as `v.set(v.get() + 1)` is.
    #[inline]
    fn bump(&self) {
        self.counter.store(self.counter.load(Relaxed) + 1, Relaxed);
    }
}

fn median(v: &[f64]) -> f64 {
    Stats::from_samples(v, Unit::Seconds).map_or(f64::NAN, |s| s.median)
}

/// Contended runs per case (each is two forks and a few ms of work).
fn runs(mode: Mode) -> usize {
    mode.scale(40)
}

/// Operations per child in contended runs: the smoke pass does 1/200.
fn ops_per_child(mode: Mode, full: u32) -> u32 {
    if mode == Mode::Smoke { full / 200 } else { full }
}

/// `200000` -> `200k`.
fn short(n: u32) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// A case of [`BATCH`] calls of `op` (monomorphic, so `op` is inlined).
fn batch<'a>(n: usize, warmup: usize, op: impl Fn() + 'a) -> Case<'a> {
    Case::new(n, warmup, move || {
        for _ in 0..BATCH {
            op();
        }
    })
}

/// Uncontended lock+unlock, seconds per pair: ours (`acquire`'s guard, then
/// `try_acquire`'s), the futex floor, pthread, robust pthread.
fn uncontended(mode: Mode, lock: &Lock, p: &Peers) -> Vec<Stats> {
    let (n, w) = (mode.scale(500), mode.warmup(50));
    let mut cases = [
        batch(n, w, || drop(lock.acquire().expect("no holder dies"))),
        batch(n, w, || drop(lock.try_acquire().expect("uncontended"))),
        batch(n, w, || {
            p.futex.lock();
            p.futex.unlock();
        }),
        batch(n, w, || {
            p.pthread.lock();
            p.pthread.unlock();
        }),
        batch(n, w, || {
            p.robust.lock();
            p.robust.unlock();
        }),
    ];
    let per_op = 1.0 / f64::from(BATCH);
    let stats = time_interleaved(n, &mut cases);
    stats.into_iter().map(|s| s.scaled(per_op)).collect()
}

/// One contended case: `op` under test in two children; checks the count.
struct Contended<'a> {
    c: &'a Contention,
    peers: &'a Arc<Peers>,
    lock: &'a Lock,
    ops: u32,
}

impl Contended<'_> {
    fn case<'f, F>(&'f self, mode: Mode, op: F, fair: &'f mut Vec<f64>) -> Case<'f>
    where
        F: Fn(&Peers, &Lock) + Copy + Send + 'static,
    {
        Case::timed(runs(mode), mode.warmup(2), move || {
            self.peers.counter.store(0, Relaxed);
            let (p, l) = (Arc::clone(self.peers), self.lock.clone());
            let run = self.c.run(self.ops, move || op(&p, &l));
            // Relaxed: the children have been reaped.
            let done = self.peers.counter.load(Relaxed);
            assert_eq!(done, 2 * u64::from(self.ops), "the lock let an increment slip");
            fair.push(run.fairness);
            run.elapsed
        })
    }
}

/// Ours, futex, pthread, robust pthread contended: seconds per run, and
/// each one's median fairness.
fn contended(mode: Mode, setup: &Contended<'_>) -> Vec<(Stats, f64)> {
    let mut fair: [Vec<f64>; 4] = Default::default();
    let [f0, f1, f2, f3] = &mut fair;
    let mut cases = [
        setup.case(
            mode,
            |p, l| {
                let _g = l.acquire().expect("no holder dies");
                p.bump();
            },
            f0,
        ),
        setup.case(
            mode,
            |p, _| {
                p.futex.lock();
                p.bump();
                p.futex.unlock();
            },
            f1,
        ),
        setup.case(
            mode,
            |p, _| {
                p.pthread.lock();
                p.bump();
                p.pthread.unlock();
            },
            f2,
        ),
        setup.case(
            mode,
            |p, _| {
                p.robust.lock();
                p.bump();
                p.robust.unlock();
            },
            f3,
        ),
    ];
    let stats = time_interleaved(runs(mode), &mut cases);
    drop(cases);
    stats.into_iter().zip(fair.iter().map(|f| median(f))).collect()
}

/// Ours: `{ let _g = lock.lock(); v.set(v.get() + 1) }` in two children;
/// seconds per run and median fairness.
fn locked_value(mode: Mode, contention: &Contention, lock: &Lock, ops: u32) -> (Stats, f64) {
    let (n, warmup) = (runs(mode), mode.warmup(2));
    let value = RawValue::new(0u64).expect("create a RawValue");
    let mut fair = Vec::new();
    let mut cases = [Case::timed(n, warmup, || {
        value.set(0);
        let (lock, v) = (lock.clone(), value.clone());
        let run = contention.run(ops, move || {
            let _g = lock.acquire().expect("no holder dies");
            v.set(v.get() + 1);
        });
        assert_eq!(value.get(), 2 * u64::from(ops), "the lock let an increment slip");
        fair.push(run.fairness);
        run.elapsed
    })];
    let stats = time_interleaved(n, &mut cases)[0];
    drop(cases);
    (stats, median(&fair))
}

/// Python's locked increments: seconds per run and fairness, if it ran.
fn python_value(mode: Mode, ops: u32, report: &mut Report) -> Option<(Measured, f64)> {
    let (samples, warmup) = match mode {
        Mode::Full => (7, 1),
        Mode::Quick => (3, 0),
        Mode::Smoke => (1, 0),
    };
    let ops = usize::try_from(ops).expect("u32 fits usize");
    let args = python::args(&[
        ("--n", ops),
        ("--procs", KIDS),
        ("--samples", samples),
        ("--warmup", warmup),
    ]);
    let j = python::run("sync_value.py", &args)
        .map_err(|why| report.skipped.push(format!("Python locked-increment row ({why})")))
        .ok()?;
    let name = format!("Python {} Value + get_lock()", j.text("python").unwrap_or("3"));
    let stats = j.stats("seconds", Unit::Seconds)?;
    Some((Measured::new(name, stats), j.number("fairness").unwrap_or(f64::NAN)))
}

/// Rows 1: uncontended lock+unlock against the futex floor and pthread.
fn uncontended_rows(mode: Mode, lock: &Lock, peers: &Peers, report: &mut Report, chart: Chart) -> Chart {
    let names = [
        "shm Lock, acquire()+drop",
        "shm Lock, try_acquire()+drop",
        "futex mutex (raw, std's algorithm)",
        "pthread mutex, process-shared",
        "pthread mutex, process-shared robust",
    ];
    let u: Vec<Measured> = names
        .iter()
        .zip(uncontended(mode, lock, peers))
        .map(|(name, s)| report.measure(Measured::new(*name, s)))
        .collect();
    let rows = [
        (&u[0], &u[2], Target::AtMost(1.2)),
        (&u[0], &u[3], Target::AtMost(1.0)),
        (&u[0], &u[4], Target::None),
        (&u[1], &u[2], Target::None),
    ];
    for (ours, peer, target) in rows {
        let row = Row::new(
            "lock+unlock, uncontended (per pair)",
            ours.clone(),
            &peer.name,
            Some(peer.stats),
        );
        report.rows.push(row.target(target));
    }
    let bars = [
        ("1 proc: shm Lock, guard", Kind::Ours),
        ("1 proc: shm Lock, try_acquire", Kind::Ours),
        ("1 proc: futex mutex (raw)", Kind::Floor),
        ("1 proc: pthread pshared", Kind::Peer),
        ("1 proc: pthread pshared robust", Kind::Peer),
    ];
    u.iter()
        .zip(bars)
        .fold(chart, |chart, (m, (label, kind))| chart.bar(label, m.stats, kind))
}

/// Rows 2: two processes contending, in operations per second.
fn contended_rows(mode: Mode, setup: &Contended<'_>, report: &mut Report, mut chart: Chart) -> Chart {
    let total = f64::from(setup.ops) * f64::from(u32::try_from(KIDS).expect("a few children"));
    let c = contended(mode, setup);
    let label = [
        "shm Lock",
        "futex mutex (raw)",
        "pthread process-shared",
        "pthread robust",
    ];
    let rates: Vec<Measured> = label
        .iter()
        .zip(&c)
        .map(|(name, (s, _))| {
            report.measure(Measured::new(
                format!("{name}, 2 processes contending"),
                s.per_second(total),
            ))
        })
        .collect();
    let bench = format!("lock+increment+unlock, {KIDS} processes × {} each", short(setup.ops));
    for (peer, target) in [
        (&rates[2], Target::AtLeast(1.0)),
        (&rates[3], Target::None),
        (&rates[1], Target::None),
    ] {
        let row = Row::new(&bench, rates[0].clone(), &peer.name, Some(peer.stats));
        report.rows.push(row.target(target));
    }
    let fairness: Vec<String> = label.iter().zip(&c).map(|(l, (_, f))| format!("{l} {f:.2}")).collect();
    let pinned = if setup.c.pinned() {
        "each child pinned to a CPU of its own"
    } else {
        "children unpinned (fewer than 2 CPUs allowed)"
    };
    report.notes.push(format!(
        "{bench}: {pinned}; fairness (first child's finish time / last child's, median; 1.0 = both end \
         together): {}",
        fairness.join(", ")
    ));
    let kinds = [Kind::Ours, Kind::Floor, Kind::Peer, Kind::Peer];
    for ((l, (s, _)), kind) in label.iter().zip(&c).zip(kinds) {
        chart = chart.bar(format!("2 procs: {l}"), s.scaled(1.0 / total), kind);
    }
    chart
}

/// Row 3: locked increments of a shared value, against Python.
fn value_rows(mode: Mode, contention: &Contention, lock: &Lock, report: &mut Report, chart: Chart) -> Chart {
    let ops = ops_per_child(mode, 100_000);
    let total = f64::from(ops) * f64::from(u32::try_from(KIDS).expect("a few children"));
    let (ours, ours_fair) = locked_value(mode, contention, lock, ops);
    let ours = report.measure(Measured::new("shm Lock + RawValue, 2 processes", ours));
    let py = python_value(mode, ops, report);
    let bench = format!(
        "locked increment of a shared value, {KIDS} processes × {} each",
        short(ops)
    );
    let per_s = |s: &Stats| Unit::PerSecond.format(total / s.median);
    let mut note = format!(
        "{bench}, increments per second: shm {} (fairness {ours_fair:.2})",
        per_s(&ours.stats)
    );
    if let Some((p, f)) = &py {
        report.measure(p.clone());
        let _ = write!(note, ", {} {} (fairness {f:.2})", p.name, per_s(&p.stats));
    }
    report.notes.push(note);
    let py_name = py.as_ref().map_or("Python Value + get_lock()", |(p, _)| &p.name);
    let row = Row::new(&bench, ours.clone(), py_name, py.as_ref().map(|(p, _)| p.stats));
    // At least 20x faster than Python: ours/python ≤ 0.05.
    report.rows.push(row.target(Target::AtMost(0.05)));
    let per_op = 1.0 / total;
    let chart = chart.bar(
        "2 procs, +1: shm Lock + RawValue",
        ours.stats.scaled(per_op),
        Kind::Ours,
    );
    match py {
        Some((p, _)) => chart.bar("2 procs, +1: Python Value", p.stats.scaled(per_op), Kind::Peer),
        None => chart,
    }
}

/// Measures everything and adds the rows, notes and `sync.svg` to `report`.
///
/// # Panics
///
/// If shared memory cannot be mapped or a child fails.
pub fn run(mode: Mode, report: &mut Report) {
    let peers = Arc::new(Peers::new().expect("map the raw peers"));
    let lock = Lock::new().expect("create a Lock");
    let contention = Contention::new().expect("map the start board");
    let chart = Chart::new(
        "sync.svg",
        "Lock: time per lock+unlock, 1 or 2 processes (median, p10..p90)",
    );
    let chart = uncontended_rows(mode, &lock, &peers, report, chart);
    let setup = Contended {
        c: &contention,
        peers: &peers,
        lock: &lock,
        ops: ops_per_child(mode, 200_000),
    };
    let chart = contended_rows(mode, &setup, report, chart);
    let chart = value_rows(mode, &contention, &lock, report, chart);
    report.charts.push(chart);

    // The futex sleep/wake floor, for later Event/Condition rows.
    ping_pong::rows(mode, report);
}
