//! The manager's containers and served types against Python's
//! `multiprocessing.Manager`, LMDB (through heed, on tmpfs, syncing off) and
//! `UltraDict` (when `pip install ultradict atomics` works), in the same run
//! (issue 12):
//!
//! - dict get and set per second from 1 process and from 2 at once (keys
//!   0..999, prefilled; each operation is its own transaction: one LMDB
//!   read or write transaction per get or put, as each of ours is);
//! - a served type's method call round trip (p50, p99);
//! - namespace attribute reads and writes per second;
//! - growth: inserting n entries one at a time from empty, n from 10 k to
//!   1 M, plotted per entry beside `std::collections::HashMap` in one
//!   process (a floor: no sharing, no crash safety).
//!
//! The Python side is `python/manager.py`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use heed::byteorder::NativeEndian;
use heed::types::U64;
use heed::{Database, Env, EnvFlags, EnvOpenOptions};
use shmproc::{Dict, Event, Manager, Namespace, Process, Proxy, RawValue};

use crate::Mode;
use crate::harness::plot::{Kind, LineChart};
use crate::harness::python;
use crate::harness::python::FlatJson;
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::stats::{Stats, Unit, rates};

/// Keys of the get/set rows.
const KEYS: u64 = 1000;

#[derive(serde::Serialize, serde::Deserialize)]
struct Counter {
    n: u64,
}

impl Counter {
    fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

shmproc::served! {
    impl Counter as CounterHandle {
        attrs { n: u64 }
        fn bump(&mut self) -> u64;
    }
}

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
enum Op {
    Get,
    Set,
}

fn dict_ops(d: &Dict<u64, u64>, op: Op, n: usize) {
    for i in 0..n as u64 {
        match op {
            Op::Get => {
                std::hint::black_box(d.get(&(i % KEYS)).expect("get"));
            }
            Op::Set => d.set(&(i % KEYS), &i).expect("set"),
        }
    }
}

fn dict_worker((d, go, op, n): (Dict<u64, u64>, Event, Op, usize)) {
    go.wait();
    dict_ops(&d, op, n);
}

/// The rate of 2 processes doing `n` operations each at once, one sample
/// per round: all operations over the time from the start signal to both
/// joined.
fn two_processes<A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    rounds: usize,
    n: usize,
    target: fn(A),
    args: impl Fn(Event) -> A,
) -> Stats {
    let samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let go = Event::new().expect("event");
            let procs: Vec<Process> = (0..2).map(|_| Process::new(target, args(go.clone()))).collect();
            for p in &procs {
                p.start().expect("start");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            let t = Instant::now();
            go.set();
            for p in &procs {
                assert_eq!(p.join().expect("join"), 0, "a worker failed");
            }
            #[allow(clippy::cast_precision_loss, reason = "an operation count, far below 2^52")]
            let all = (2 * n) as f64;
            all / t.elapsed().as_secs_f64()
        })
        .collect();
    Stats::from_samples(&samples, Unit::PerSecond).expect("at least one round")
}

// ----- LMDB through heed -----

type Lmdb = Database<U64<NativeEndian>, U64<NativeEndian>>;

/// Opens (creating) the LMDB environment at `dir`, syncing off.
fn open_lmdb(dir: &Path) -> (Env, Lmdb) {
    std::fs::create_dir_all(dir).expect("lmdb dir");
    let mut opts = EnvOpenOptions::new();
    opts.map_size(1 << 30).max_dbs(1);
    // SAFETY: NO_SYNC and NO_META_SYNC only drop durability across a
    // machine crash, which a benchmark on tmpfs does not need.
    unsafe { opts.flags(EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC) };
    // SAFETY: each process opens the environment once, and nothing else
    // changes its files meanwhile.
    let env = unsafe { opts.open(dir) }.expect("open lmdb");
    let mut w = env.write_txn().expect("write txn");
    let db: Lmdb = env.create_database(&mut w, None).expect("database");
    w.commit().expect("commit");
    (env, db)
}

fn lmdb_ops(env: &Env, db: Lmdb, op: Op, n: usize) {
    for i in 0..n as u64 {
        match op {
            Op::Get => {
                let r = env.read_txn().expect("read txn");
                std::hint::black_box(db.get(&r, &(i % KEYS)).expect("get"));
            }
            Op::Set => {
                let mut w = env.write_txn().expect("write txn");
                db.put(&mut w, &(i % KEYS), &i).expect("put");
                w.commit().expect("commit");
            }
        }
    }
}

fn lmdb_worker((dir, go, op, n): (PathBuf, Event, Op, usize)) {
    let (env, db) = open_lmdb(&dir);
    go.wait();
    lmdb_ops(&env, db, op, n);
}

fn lmdb_prefill(dir: PathBuf) {
    let (env, db) = open_lmdb(&dir);
    let mut w = env.write_txn().expect("write txn");
    for k in 0..KEYS {
        db.put(&mut w, &k, &k).expect("put");
    }
    w.commit().expect("commit");
}

/// LMDB's rows: (get 1, set 1, get 2, set 2). Every process opens the
/// environment itself (LMDB forbids using one across a fork); the 1-process
/// rows run in a child too, so this process never opens it.
fn lmdb_rows(rounds: usize, n: usize) -> [Stats; 4] {
    let dir = std::env::temp_dir().join(format!("shm-bench-lmdb-{}", std::process::id()));
    let base = if Path::new("/dev/shm").is_dir() {
        Path::new("/dev/shm").join(format!("shm-bench-lmdb-{}", std::process::id()))
    } else {
        dir
    };
    let p = Process::new(lmdb_prefill, base.clone());
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    let one = |op: Op| {
        let samples: Vec<f64> = (0..rounds)
            .map(|_| {
                let rate = RawValue::new(0.0f64).expect("value");
                let p = Process::new(lmdb_one, (base.clone(), op, n, rate.clone()));
                p.start().expect("start");
                assert_eq!(p.join().expect("join"), 0);
                rate.get()
            })
            .collect();
        Stats::from_samples(&samples, Unit::PerSecond).expect("rounds")
    };
    let get1 = one(Op::Get);
    let set1 = one(Op::Set);
    let two = |op| two_processes(rounds, n, lmdb_worker, |go| (base.clone(), go, op, n));
    let (get2, set2) = (two(Op::Get), two(Op::Set));
    let _ = std::fs::remove_dir_all(&base);
    [get1, set1, get2, set2]
}

/// One process's LMDB rate, handed back through `rate`.
fn lmdb_one((dir, op, n, rate): (PathBuf, Op, usize, RawValue<f64>)) {
    let (env, db) = open_lmdb(&dir);
    lmdb_ops(&env, db, Op::Get, n.min(1000));
    let t = Instant::now();
    lmdb_ops(&env, db, op, n);
    #[allow(clippy::cast_precision_loss, reason = "an operation count, far below 2^52")]
    rate.set(n as f64 / t.elapsed().as_secs_f64());
}

// ----- growth -----

/// Seconds to insert `n` entries one at a time into a new dict.
fn insert_time(n: u64) -> f64 {
    let d = Dict::<u64, u64>::new().expect("dict");
    let t = Instant::now();
    for k in 0..n {
        d.set(&k, &k).expect("set");
    }
    let s = t.elapsed().as_secs_f64();
    assert_eq!(d.len().expect("len") as u64, n);
    s
}

fn hashmap_time(n: u64) -> f64 {
    let mut m = std::collections::HashMap::new();
    let t = Instant::now();
    for k in 0..n {
        m.insert(k, k);
    }
    std::hint::black_box(&m);
    t.elapsed().as_secs_f64()
}

fn growth(mode: Mode, report: &mut Report) {
    let sizes: Vec<u64> = [10_000usize, 30_000, 100_000, 300_000, 1_000_000]
        .into_iter()
        .map(|n| mode.scale(n) as u64)
        .collect();
    #[allow(clippy::cast_precision_loss, reason = "entry counts, far below 2^52")]
    let per = |s: f64, n: u64| s / n as f64;
    let ours: Vec<f64> = sizes.iter().map(|&n| per(insert_time(n), n)).collect();
    let floor: Vec<f64> = sizes.iter().map(|&n| per(hashmap_time(n), n)).collect();
    let last = *sizes.last().expect("sizes");
    #[allow(clippy::cast_precision_loss, reason = "entry counts, far below 2^52")]
    let total = ours.last().copied().unwrap_or(0.0) * last as f64;
    let m = report.measure(Measured::new(
        format!("shm Dict: insert {last} entries one at a time from empty"),
        Stats::single(total, Unit::Seconds),
    ));
    report.rows.push(Row::info(
        format!("growth: {last} inserts from empty (curve: manager_growth.svg)"),
        m,
    ));
    let curve: Vec<String> = sizes
        .iter()
        .zip(ours.iter().zip(&floor))
        .map(|(n, (s, f))| format!("{n}: {} ({})", Unit::Seconds.format(*s), Unit::Seconds.format(*f)))
        .collect();
    report.notes.push(format!(
        "growth: time per insert into a shm Dict growing from empty (std HashMap in one process): {}",
        curve.join(", ")
    ));
    let chart = LineChart::new(
        "manager_growth.svg",
        "time per insert while a dict grows from empty",
        "entries inserted",
        sizes.iter().map(u64::to_string).collect(),
        Unit::Seconds,
    )
    .line(
        "shm Dict (shared, crash-safe)",
        Kind::Ours,
        ours.into_iter().map(Some).collect(),
    )
    .line(
        "std HashMap (one process)",
        Kind::Floor,
        floor.into_iter().map(Some).collect(),
    );
    report.plots.push(chart);
}

// ----- Python -----

/// An interpreter with `UltraDict` and `atomics`, in a virtual environment
/// under `target/`; why not, when it cannot be made.
fn ultradict_python() -> Result<PathBuf, String> {
    python::venv_with("bench-venv-manager", &["ultradict", "atomics"], "UltraDict, atomics")
}

fn python_side(mode: Mode, report: &mut Report) -> Option<FlatJson> {
    let interpreter = if mode == Mode::Smoke {
        PathBuf::from("python3")
    } else {
        match ultradict_python() {
            Ok(py) => py,
            Err(why) => {
                report.skipped.push(format!("UltraDict: not installed ({why})"));
                PathBuf::from("python3")
            }
        }
    };
    let args = python::args(&[
        ("--ops", mode.scale(3000).max(20)),
        ("--calls", mode.scale(5000).max(20)),
        ("--rounds", mode.scale(5).max(1)),
    ]);
    match python::run_with(&interpreter, "manager.py", &args) {
        Ok(j) => Some(j),
        Err(why) => {
            report.skipped.push(format!("Python manager rows ({why})"));
            None
        }
    }
}

/// Our dict's rates: get and set from 1 process, then from 2.
fn ours_dict(rounds: usize, n: usize, report: &mut Report) -> [Measured; 4] {
    let d = Dict::<u64, u64>::new().expect("dict");
    for k in 0..KEYS {
        d.set(&k, &k).expect("set");
    }
    let read_one = report.measure(Measured::new(
        "shm Dict get, 1 process",
        rates(rounds, n, || dict_ops(&d, Op::Get, n)),
    ));
    let write_one = report.measure(Measured::new(
        "shm Dict set, 1 process",
        rates(rounds, n, || dict_ops(&d, Op::Set, n)),
    ));
    let two = |op| two_processes(rounds, n, dict_worker, |go| (d.clone(), go, op, n));
    let read_two = report.measure(Measured::new("shm Dict get, 2 processes", two(Op::Get)));
    let write_two = report.measure(Measured::new("shm Dict set, 2 processes", two(Op::Set)));
    [read_one, write_one, read_two, write_two]
}

/// A served method's round trip: its distribution, and its p99.
fn served_call(mode: Mode, report: &mut Report) -> (Measured, f64) {
    let manager = Manager::builder().register::<Counter>().start().expect("manager");
    let c: Proxy<Counter> = manager.create(Counter { n: 0 }).expect("create");
    let calls = mode.scale(50_000).max(100);
    for _ in 0..calls / 10 {
        c.bump().expect("call");
    }
    let mut lat: Vec<f64> = (0..calls)
        .map(|_| {
            let t = Instant::now();
            c.bump().expect("call");
            t.elapsed().as_secs_f64()
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let call = report.measure(Measured::new(
        "shm Proxy method call round trip",
        Stats::from_samples(&lat, Unit::Seconds).expect("samples"),
    ));
    (call, crate::harness::stats::nearest_rank(&lat, 990))
}

/// A namespace's attribute reads and writes per second.
fn namespace_rates(rounds: usize, n: usize, report: &mut Report) -> (Measured, Measured) {
    let ns = Namespace::new().expect("namespace");
    ns.set("x", &1u64).expect("set");
    let get = report.measure(Measured::new(
        "shm Namespace attribute read",
        rates(rounds, n, || {
            for _ in 0..n {
                std::hint::black_box(ns.get::<u64>("x").expect("get"));
            }
        }),
    ));
    let set = report.measure(Measured::new(
        "shm Namespace attribute write",
        rates(rounds, n, || {
            for i in 0..n as u64 {
                ns.set("x", &i).expect("set");
            }
        }),
    ));
    (get, set)
}

/// Measures the manager rows.
///
/// # Panics
///
/// If a container or the manager fails where it must not.
#[allow(clippy::too_many_lines, reason = "one table of rows, read top to bottom")]
pub fn run(mode: Mode, report: &mut Report) {
    let rounds = mode.scale(5).max(1);
    let n = mode.scale(300_000).max(100);
    let [dict_read_one, dict_write_one, dict_read_two, dict_write_two] = ours_dict(rounds, n, report);
    let [lmdb_read_one, lmdb_write_one, lmdb_read_two, lmdb_write_two] = lmdb_rows(rounds, n);
    let lmdb = |what: &str| format!("LMDB (heed, tmpfs, NO_SYNC) {what}");
    let (call, call_p99) = served_call(mode, report);
    let (ns_get, ns_set) = namespace_rates(rounds, n, report);
    growth(mode, report);

    let py = python_side(mode, report);
    let py_name = py.as_ref().map_or_else(
        || "Python".to_owned(),
        |j| format!("Python {}", j.text("python").unwrap_or("3")),
    );
    let peer = |key: &str, unit: Unit| py.as_ref().and_then(|j| j.stats(key, unit));
    let rows: Vec<(&str, &Measured, String, Option<Stats>, Target)> = vec![
        (
            "dict get, 1 process",
            &dict_read_one,
            format!("{py_name} Manager().dict() d[k]"),
            peer("get", Unit::PerSecond),
            Target::AtLeast(100.0),
        ),
        (
            "dict set, 1 process",
            &dict_write_one,
            format!("{py_name} Manager().dict() d[k] = v"),
            peer("set", Unit::PerSecond),
            Target::AtLeast(100.0),
        ),
        (
            "dict get, 2 processes",
            &dict_read_two,
            format!("{py_name} Manager().dict(), 2 processes"),
            peer("get2", Unit::PerSecond),
            Target::AtLeast(100.0),
        ),
        (
            "dict set, 2 processes",
            &dict_write_two,
            format!("{py_name} Manager().dict(), 2 processes"),
            peer("set2", Unit::PerSecond),
            Target::AtLeast(100.0),
        ),
        (
            "dict get, 1 process, vs LMDB",
            &dict_read_one,
            lmdb("get"),
            Some(lmdb_read_one),
            Target::None,
        ),
        (
            "dict set, 1 process, vs LMDB",
            &dict_write_one,
            lmdb("put"),
            Some(lmdb_write_one),
            Target::None,
        ),
        (
            "dict get, 2 processes, vs LMDB",
            &dict_read_two,
            lmdb("get, 2 processes"),
            Some(lmdb_read_two),
            Target::AtLeast(1.0),
        ),
        (
            "dict set, 2 processes, vs LMDB",
            &dict_write_two,
            lmdb("put, 2 processes"),
            Some(lmdb_write_two),
            Target::AtLeast(0.5),
        ),
        (
            "served method call round trip, p50",
            &call,
            format!("{py_name} BaseManager proxy call"),
            peer("call", Unit::Seconds),
            Target::AtMost(0.05),
        ),
        (
            "namespace attribute read",
            &ns_get,
            format!("{py_name} Manager().Namespace() ns.x"),
            peer("ns_get", Unit::PerSecond),
            Target::None,
        ),
        (
            "namespace attribute write",
            &ns_set,
            format!("{py_name} Manager().Namespace() ns.x = v"),
            peer("ns_set", Unit::PerSecond),
            Target::None,
        ),
        (
            "dict get, 1 process, vs UltraDict",
            &dict_read_one,
            "UltraDict d[k] (reads its local copy)".to_owned(),
            peer("ultra_get", Unit::PerSecond),
            Target::None,
        ),
        (
            "dict set, 1 process, vs UltraDict",
            &dict_write_one,
            "UltraDict d[k] = v (shared_lock)".to_owned(),
            peer("ultra_set", Unit::PerSecond),
            Target::None,
        ),
        (
            "dict get, 2 processes, vs UltraDict",
            &dict_read_two,
            "UltraDict, 2 processes".to_owned(),
            peer("ultra_get2", Unit::PerSecond),
            Target::None,
        ),
        (
            "dict set, 2 processes, vs UltraDict",
            &dict_write_two,
            "UltraDict, 2 processes".to_owned(),
            peer("ultra_set2", Unit::PerSecond),
            Target::None,
        ),
    ];
    for (bench, ours, peer_name, peer_stats, target) in rows {
        if peer_stats.is_some() {
            report
                .rows
                .push(Row::new(bench, ours.clone(), peer_name, peer_stats).target(target));
        }
    }
    let p99 = Measured::new("shm Proxy method call p99", Stats::single(call_p99, Unit::Seconds));
    let py_p99 = py
        .as_ref()
        .and_then(|j| j.number("call_p99"))
        .map(|v| Stats::single(v, Unit::Seconds));
    report.rows.push(Row::new(
        "served method call round trip, p99",
        p99,
        format!("{py_name} p99"),
        py_p99,
    ));
}
