//! `shmproc::Pool` and `shmproc::ThreadPool` against Python's `multiprocessing.Pool`,
//! `concurrent.futures.ProcessPoolExecutor`, mpire (when it installs) and
//! rayon, in the same run (issue 11):
//!
//! - trivial tasks per second, 2 workers, chunksize 1 and the default;
//! - the `apply_async(..).get()` round trip, p50 and p99;
//! - `ThreadPool` against rayon on the same trivial map;
//! - a CPU-bound map on 2 workers against a sequential loop;
//! - the time from a worker's SIGKILL to the caller's error.
//!
//! The Python side is `python/pool.py`, run in a virtual environment under
//! `target/` where `pip install mpire` worked (said in the report if not).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use shmproc::{Pool, PoolError, RawValue, ThreadPool};

use crate::Mode;
use crate::harness::python;
use crate::harness::python::FlatJson;
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::stats::{Stats, Unit, nearest_rank, rates};

/// The trivial task of every throughput row.
fn triv(x: u64) -> u64 {
    x + 1
}

/// About a millisecond of arithmetic.
fn work(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..1_000_000 {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// Says it started (a shared counter), then sleeps longer than any sample.
fn started_then_sleeps(started: &mut RawValue<u32>, x: u64) -> u64 {
    started.fetch_add(1, std::sync::atomic::Ordering::Release);
    std::thread::sleep(Duration::from_secs(30));
    x
}

/// The interpreter of a virtual environment with mpire, made under
/// `target/` on first use; why not, when it cannot be made.
fn mpire_python() -> Result<PathBuf, String> {
    python::venv_with("bench-venv", &["mpire"], "mpire")
}

/// Time from SIGKILL of a worker running a task to the caller seeing that
/// task's error, `samples` times (a fresh pool each).
fn kill_to_error(samples: usize) -> Result<Stats, PoolError> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = RawValue::new(0u32)?;
        let pool = Pool::builder().processes(2).shared_input(started.clone()).build()?;
        let mut results = pool.imap_unordered(started_then_sleeps, 0..2u64)?;
        // Both workers run their task (a handshake through shared memory).
        let deadline = Instant::now() + Duration::from_secs(30);
        while started.load(std::sync::atomic::Ordering::Acquire) < 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let (pid, _) = pool.workers()[0].clone();
        let t = Instant::now();
        shmproc::sys::kill_pid(pid, 9);
        match results.next() {
            Some(Err(_)) => times.push(t.elapsed()),
            other => panic!("a killed worker's task reported {other:?}"),
        }
        drop(results);
        pool.terminate();
    }
    Ok(Stats::from_durations(&times).expect("samples > 0"))
}

/// Our process pool's numbers: chunksize 1, default chunksize, the
/// `apply_async` round trip and its p99.
struct Ours {
    c1: Measured,
    default: Measured,
    apply: Measured,
    apply_p99: f64,
}

fn ours_process(mode: Mode, report: &mut Report) -> Result<Ours, PoolError> {
    let rounds = mode.scale(10).max(1);
    let (c1, default) = (mode.scale(2_000_000).max(1000), mode.scale(20_000_000).max(1000));
    let trips = mode.scale(50_000).max(100);
    let pool = Pool::new(2)?;
    let c1 = report.measure(Measured::new(
        "shm Pool(2).map_chunked(x+1, chunksize 1)",
        rates(rounds, c1, || {
            assert_eq!(pool.map_chunked(triv, 0..c1 as u64, 1).expect("map").len(), c1);
        }),
    ));
    let default = report.measure(Measured::new(
        "shm Pool(2).map(x+1), default chunksize",
        rates(rounds, default, || {
            assert_eq!(pool.map(triv, 0..default as u64).expect("map").len(), default);
        }),
    ));
    let mut lat: Vec<f64> = (0..trips + trips / 10)
        .map(|i| {
            let t = Instant::now();
            let r = pool
                .apply_async(triv, (i as u64,))
                .expect("apply_async")
                .get()
                .expect("get");
            assert_eq!(r, i as u64 + 1);
            t.elapsed().as_secs_f64()
        })
        .skip(trips / 10)
        .collect();
    lat.sort_by(f64::total_cmp);
    let apply = report.measure(Measured::new(
        "shm Pool(2).apply_async(x+1).get()",
        Stats::from_samples(&lat, Unit::Seconds).expect("samples"),
    ));
    Ok(Ours {
        c1,
        default,
        apply,
        apply_p99: nearest_rank(&lat, 990),
    })
}

/// Our thread pool and rayon on the same trivial map.
fn threads(mode: Mode, report: &mut Report) -> Row {
    let rounds = mode.scale(10).max(1);
    let n = mode.scale(20_000_000).max(1000);
    let threads = ThreadPool::new(2).expect("ThreadPool::new");
    let ours = report.measure(Measured::new(
        "shm ThreadPool(2).map(x+1), default chunksize",
        rates(rounds, n, || {
            assert_eq!(threads.map(triv, 0..n as u64).expect("map").len(), n);
        }),
    ));
    drop(threads);
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool");
    let rayon = report.measure(Measured::new(
        "rayon (2 threads) par_iter().map(x+1).collect()",
        rates(rounds, n, || {
            let v: Vec<u64> = rayon_pool.install(|| (0..n as u64).into_par_iter().map(triv).collect());
            assert_eq!(v.len(), n);
        }),
    ));
    Row::new(
        "ThreadPool trivial tasks, default chunksize, vs rayon",
        ours,
        &rayon.name,
        Some(rayon.stats),
    )
    .target(Target::AtLeast(0.5))
}

/// A CPU-bound map on 2 workers against a sequential loop.
fn cpu_bound(mode: Mode, report: &mut Report) -> Row {
    let items: Vec<u64> = (0..mode.scale(400).max(8) as u64).collect();
    let pool = Pool::new(2).expect("Pool::new");
    let (mut seq, mut par) = (Vec::new(), Vec::new());
    for _ in 0..mode.scale(5).max(1) {
        let t = Instant::now();
        let expected: Vec<u64> = items.iter().map(|&x| work(x)).collect();
        seq.push(t.elapsed());
        let t = Instant::now();
        let got = pool.map(work, items.iter().copied()).expect("map");
        par.push(t.elapsed());
        assert_eq!(got, expected);
    }
    let seq = report.measure(Measured::new(
        format!("sequential loop, {} x ~1 ms", items.len()),
        Stats::from_durations(&seq).expect("samples"),
    ));
    let par = report.measure(Measured::new(
        format!("shm Pool(2).map, {} x ~1 ms", items.len()),
        Stats::from_durations(&par).expect("samples"),
    ));
    // Speed-up ≥ 1.8: pool time / sequential time ≤ 1/1.8.
    Row::new(
        "CPU-bound map, 2 workers on 2 cores, vs sequential",
        par,
        &seq.name,
        Some(seq.stats),
    )
    .target(Target::AtMost(1.0 / 1.8))
}

/// Runs the Python peer (in the mpire environment if it could be made).
fn python_side(mode: Mode, report: &mut Report) -> Option<FlatJson> {
    let venv = mpire_python();
    let interpreter = venv.clone().unwrap_or_else(|_| PathBuf::from("python3"));
    if let Err(why) = &venv {
        report.skipped.push(format!("mpire: not installed ({why})"));
    }
    let args = python::args(&[
        ("--c1", mode.scale(40_000).max(200)),
        ("--default", mode.scale(4_000_000).max(2000)),
        ("--apply", mode.scale(5000).max(50)),
        ("--ppe", mode.scale(10_000).max(100)),
        ("--rounds", mode.scale(5).max(1)),
        ("--kills", mode.scale(10).max(1)),
    ]);
    match python::run_with(&interpreter, "pool.py", &args) {
        Ok(j) => Some(j),
        Err(why) => {
            report.skipped.push(format!("Python pool rows ({why})"));
            None
        }
    }
}

/// Measures the pool rows.
///
/// # Panics
///
/// If a pool fails where it must not (a wrong result, a failed start).
pub fn run(mode: Mode, report: &mut Report) {
    let ours = match ours_process(mode, report) {
        Ok(o) => o,
        Err(e) => {
            report.skipped.push(format!("pool rows ({e})"));
            return;
        }
    };
    let thread_row = threads(mode, report);
    let cpu_row = cpu_bound(mode, report);
    let kill = kill_to_error(mode.scale(20).max(2))
        .map(|s| report.measure(Measured::new("shm Pool: SIGKILL -> task error", s)));
    let py = python_side(mode, report);
    let py_name = py.as_ref().map_or_else(
        || "Python".to_owned(),
        |j| format!("Python {}", j.text("python").unwrap_or("3")),
    );
    let peer = |key: &str, unit: Unit| py.as_ref().and_then(|j| j.stats(key, unit));
    let rows = [
        (
            "Pool trivial tasks, 2 workers, chunksize 1",
            &ours.c1,
            format!("{py_name} Pool(2).map chunksize=1"),
            peer("pool_c1", Unit::PerSecond),
            Target::AtLeast(50.0),
        ),
        (
            "Pool trivial tasks, 2 workers, default chunksize",
            &ours.default,
            format!("{py_name} Pool(2).map"),
            peer("pool_default", Unit::PerSecond),
            Target::AtLeast(5.0),
        ),
        (
            "Pool trivial tasks, chunksize 1, vs ProcessPoolExecutor",
            &ours.c1,
            format!("{py_name} ProcessPoolExecutor(2).map"),
            peer("ppe_c1", Unit::PerSecond),
            Target::None,
        ),
        (
            "Pool trivial tasks, chunksize 1, vs mpire",
            &ours.c1,
            "mpire WorkerPool(2).map chunk_size=1".to_owned(),
            peer("mpire_c1", Unit::PerSecond),
            Target::None,
        ),
        (
            "apply_async(..).get() round trip, p50",
            &ours.apply,
            format!("{py_name} Pool(2).apply_async(..).get()"),
            peer("apply", Unit::Seconds),
            Target::AtMost(0.05),
        ),
    ];
    for (bench, ours, peer_name, peer_stats, target) in rows {
        report
            .rows
            .push(Row::new(bench, ours.clone(), peer_name, peer_stats).target(target));
    }
    let p99 = Measured::new(
        "shm Pool(2).apply_async(..).get() p99",
        Stats::single(ours.apply_p99, Unit::Seconds),
    );
    let py_p99 = py
        .as_ref()
        .and_then(|j| j.number("apply_p99"))
        .map(|v| Stats::single(v, Unit::Seconds));
    report.rows.push(Row::new(
        "apply_async(..).get() round trip, p99",
        p99,
        format!("{py_name} p99"),
        py_p99,
    ));
    report.rows.push(thread_row);
    report.rows.push(cpu_row);
    match kill {
        Ok(k) => {
            let mut row = Row::new(
                "worker SIGKILL -> the caller's error (p50)",
                k,
                format!("{py_name} ProcessPoolExecutor (fails every task; Python's Pool hangs)"),
                peer("ppe_kill", Unit::Seconds),
            );
            row.note = Some("Python's Pool never reports the task of a killed worker: its map hangs".to_owned());
            report.rows.push(row);
        }
        Err(e) => report.skipped.push(format!("kill row ({e})")),
    }
}
