//! The process `Pool` across real processes, under every start method:
//! Python's interface, and failures (panics, deaths, overdue tasks, bad
//! initializers, bad input) that fail only what they must and never hang.
//!
//! Every wait is bounded (`get_timeout`, or the hang guard of a loop), and
//! order comes from the pool's own handshakes, never from sleeps.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc::{Exit, Lock, Pool, PoolError, RawValue, StartMethod, TaskFailure};
use shmproc_tests::{check, next_random};

type Result = shmproc_tests::TestResult;

/// Bound on any one call in these tests: only a guard against hangs.
const BOUND: Duration = Duration::from_secs(60);

// ----- tasks (plain functions: they run in the workers) -----

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pid_of_worker(_: u64) -> u32 {
    std::process::id()
}

fn panics_on_3(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

fn exits_on_5(x: u64) -> u64 {
    if x == 5 {
        std::process::exit(7);
    }
    x
}

fn aborts_on_2(x: u64) -> u64 {
    if x == 2 {
        std::process::abort();
    }
    x
}

fn sleeps_on_1(x: u64) -> u64 {
    if x == 1 {
        // Longer than any test: the pool's task timeout ends it.
        std::thread::sleep(Duration::from_secs(600));
    }
    x
}

/// Kills its worker the first time it sees 5 (a shared counter says).
fn dies_once_on_5(first: &mut RawValue<u32>, x: u64) -> u64 {
    if x == 5 && first.fetch_add(1, Relaxed) == 0 {
        std::process::exit(9);
    }
    x
}

/// Spins for about `x % 50` microseconds, so that kills land inside tasks.
fn busy(x: u64) -> u64 {
    let until = Instant::now() + Duration::from_micros(x % 50);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    x.wrapping_mul(2_654_435_761)
}

/// Counts under a shared lock; the first time it sees 3 its worker dies
/// holding the lock. Later takers recover the lock (`OwnerDied`).
fn locked_count(shared: &mut (Lock, RawValue<u64>, RawValue<u32>), x: u64) -> u64 {
    let (lock, count, died) = shared;
    let guard = if let Ok(g) = lock.acquire() {
        g
    } else {
        let g = lock.recover();
        g.mark_consistent();
        g
    };
    count.set(count.get() + 1);
    if x == 3 && died.fetch_add(1, Relaxed) == 0 {
        std::process::exit(1);
    }
    drop(guard);
    x
}

fn state_plus(state: &mut u64, x: u64) -> u64 {
    *state += 1;
    x + 1000
}

fn init_state(start: u64) -> u64 {
    start
}

fn init_panics(_: ()) {
    panic!("initializer refuses");
}

fn init_exits(_: ()) {
    std::process::exit(5);
}

fn init_name(_: ()) -> String {
    shmproc::current_process().name().to_owned()
}

#[allow(clippy::ptr_arg, reason = "a task's state is `&mut S`")]
fn my_name(name: &mut String, _: u64) -> String {
    name.clone()
}

/// A value whose serialisation fails.
#[derive(Debug, Deserialize)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unserializable refuses"))
    }
}

fn makes_unserializable(_: u64) -> Unserializable {
    Unserializable
}

/// A value that serialises but refuses to deserialise (in the worker).
#[derive(Debug, Serialize)]
struct Undeserializable(u8);

impl<'de> Deserialize<'de> for Undeserializable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undeserializable refuses"))
    }
}

fn takes_undeserializable(_: Undeserializable) -> u64 {
    0
}

fn pool(n: usize, m: StartMethod) -> std::result::Result<Pool, PoolError> {
    Pool::builder().processes(n).start_method(m).build()
}

// ----- tests -----

fn interface(m: StartMethod) -> Result {
    let p = pool(2, m)?;
    check(
        p.map(square, 0..10)? == (0..10).map(|x| x * x).collect::<Vec<_>>(),
        "map",
    )?;
    check(p.map_chunked(square, 0..100, 7)?.len() == 100, "map_chunked")?;
    check(p.starmap(add, [(1, 2), (3, 4)])? == [3, 7], "starmap")?;
    check(p.apply(add, (20, 22))? == 42, "apply")?;
    let r = p.apply_async(square, (9,))?;
    check(
        r.get_timeout(BOUND)? == 81 && r.ready() && r.successful() == Some(true),
        "apply_async",
    )?;
    let ordered: Vec<u64> = p.imap(square, 0..50)?.collect::<std::result::Result<_, _>>()?;
    check(ordered == (0..50).map(|x| x * x).collect::<Vec<_>>(), "imap order")?;
    let mut unordered: Vec<u64> = p
        .imap_unordered_chunked(square, 0..50, 3)?
        .collect::<std::result::Result<_, _>>()?;
    unordered.sort_unstable();
    check(unordered == ordered, "imap_unordered")?;
    // Endless input: the window bounds what is read.
    let first: Vec<u64> = p.imap(square, 0..)?.take(100).collect::<std::result::Result<_, _>>()?;
    check(first.len() == 100 && first[99] == 99 * 99, "imap over an endless input")?;
    // Length known from the input.
    let it = p.imap(square, 0..30)?;
    check(
        it.size_hint() == (30, Some(30)),
        format!("size_hint {:?}", it.size_hint()),
    )?;
    drop(it);
    // Callbacks, called once in the pool's thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let r = p.map_async_then(
        square,
        [2, 3],
        move |v| tx.send(Ok(v)).expect("send"),
        move |e| {
            tx2.send(Err(e.to_string())).expect("send");
        },
    )?;
    r.wait();
    check(rx.recv_timeout(BOUND).ok() == Some(Ok(vec![4, 9])), "map callback")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    p.apply_async_then(
        panics_on_3,
        (3,),
        move |v| tx.send(Ok(v)).expect("send"),
        move |e| {
            tx2.send(Err(e.to_string())).expect("send");
        },
    )?
    .wait();
    let got = rx.recv_timeout(BOUND).expect("a callback");
    check(
        matches!(&got, Err(m) if m.contains("three is not allowed")),
        format!("error callback {got:?}"),
    )?;
    check(
        p.finished() > 10 + 100 + 2 + 1 + 1 + 50 + 50 + 100 + 2,
        format!("finished {}", p.finished()),
    )?;
    p.close();
    p.join()?;
    check(
        matches!(p.map(square, [1]), Err(PoolError::Closed)),
        "a closed pool refuses work",
    )
}

fn panics_fail_alone(m: StartMethod) -> Result {
    let p = pool(2, m)?;
    let got: Vec<_> = p.imap(panics_on_3, 0..8)?.collect();
    for (i, r) in got.iter().enumerate() {
        match (i, r) {
            (3, Err(PoolError::Task(e))) => {
                let TaskFailure::Panicked(msg) = &e.failure else {
                    return Err(format!("task 3: {e}").into());
                };
                check(
                    e.index == 3 && msg.contains("three is not allowed") && e.worker.contains("PoolWorker-"),
                    format!("task 3's error: {e}"),
                )?;
            }
            (i, Ok(v)) if i != 3 && *v == i as u64 => {}
            other => return Err(format!("item {other:?}").into()),
        }
    }
    // map reports the first failure by index.
    match p.map(panics_on_3, 0..8) {
        Err(PoolError::Task(e)) if e.index == 3 => Ok(()),
        other => Err(format!("map: {other:?}").into()),
    }
}

fn deaths_fail_only_their_task(m: StartMethod) -> Result {
    let p = pool(2, m)?;
    let before: HashSet<u32> = p.workers().iter().map(|w| w.0).collect();
    let got: Vec<_> = p.imap(exits_on_5, 0..12)?.collect();
    for (i, r) in got.iter().enumerate() {
        match (i, r) {
            (5, Err(PoolError::Task(e))) => check(
                e.index == 5 && e.failure == TaskFailure::WorkerDied(Exit::Code(7)),
                format!("task 5: {e}"),
            )?,
            (i, Ok(v)) if *v == i as u64 => {}
            other => return Err(format!("item {other:?}").into()),
        }
    }
    let got: Vec<_> = p.imap(aborts_on_2, 0..6)?.collect();
    match &got[2] {
        Err(PoolError::Task(e)) if e.failure == TaskFailure::WorkerDied(Exit::Signal(6)) => {}
        other => return Err(format!("task 2: {other:?}").into()),
    }
    check(got.iter().filter(|r| r.is_ok()).count() == 5, "the others completed")?;
    // Replaced: two workers, not the two it started with.
    let after: HashSet<u32> = p.workers().iter().map(|w| w.0).collect();
    check(
        after.len() == 2 && after != before,
        format!("workers {before:?} -> {after:?}"),
    )?;
    check(p.map(square, 0..20)?.len() == 20, "the pool goes on")
}

fn retries_rerun_the_killed_task(m: StartMethod) -> Result {
    let first = RawValue::new(0u32)?;
    let p = Pool::builder()
        .processes(2)
        .start_method(m)
        .retries(1)
        .shared_input(first.clone())
        .build()?;
    let got = p.map(dies_once_on_5, 0..10)?;
    check(got == (0..10).collect::<Vec<_>>(), format!("{got:?}"))?;
    check(first.get() == 2, format!("task 5 ran {} times", first.get()))
}

fn death_holding_a_lock_does_not_wedge(m: StartMethod) -> Result {
    let shared = (Lock::new()?, RawValue::new(0u64)?, RawValue::new(0u32)?);
    let p = Pool::builder()
        .processes(2)
        .start_method(m)
        .retries(1)
        .shared_input(shared.clone())
        .build()?;
    let got = p.map_async_chunked(locked_count, 0..8, 1)?.get_timeout(BOUND)?;
    check(got == (0..8).collect::<Vec<_>>(), format!("{got:?}"))?;
    // Eight tasks, task 3 twice (once in the worker that died), and any task
    // that worker finished but had not reported yet (run again: at least
    // once, never a duplicated result).
    let count = shared.1.get();
    check((9..=16).contains(&count), format!("count {count}"))
}

fn dropping_terminates(m: StartMethod) -> Result {
    let p = pool(2, m)?;
    let running = p.apply_async(sleeps_on_1, (1,))?;
    let t = Instant::now();
    drop(p);
    check(t.elapsed() < BOUND, "drop returned")?;
    match running.get_timeout(BOUND) {
        Err(PoolError::Terminated) => Ok(()),
        other => Err(format!("a call of a dropped pool: {other:?}").into()),
    }
}

fn overdue_tasks_fail_alone(m: StartMethod) -> Result {
    let p = Pool::builder()
        .processes(2)
        .start_method(m)
        .task_timeout(Duration::from_millis(300))
        .build()?;
    let t = Instant::now();
    let got: Vec<_> = p.imap(sleeps_on_1, 0..6)?.collect();
    match &got[1] {
        Err(PoolError::Task(e)) if matches!(e.failure, TaskFailure::TimedOut(_)) => {}
        other => return Err(format!("task 1: {other:?}").into()),
    }
    check(got.iter().filter(|r| r.is_ok()).count() == 5, "the others completed")?;
    check(t.elapsed() < BOUND, "bounded")
}

fn initializer_state_and_failures(m: StartMethod) -> Result {
    let p = Pool::builder()
        .processes(2)
        .start_method(m)
        .initializer(init_state, 100u64)
        .build()?;
    check(
        p.map(state_plus, 0..5)? == [1000, 1001, 1002, 1003, 1004],
        "tasks see the state",
    )?;
    drop(p);
    let t = Instant::now();
    for (what, r) in [
        (
            "panics",
            Pool::builder()
                .processes(2)
                .start_method(m)
                .initializer(init_panics, ())
                .build()
                .map(drop),
        ),
        (
            "exits",
            Pool::builder()
                .processes(2)
                .start_method(m)
                .initializer(init_exits, ())
                .build()
                .map(drop),
        ),
    ] {
        match r {
            Err(PoolError::Initializer { worker, cause }) => check(
                worker.contains("PoolWorker-") && (what != "panics" || cause.contains("initializer refuses")),
                format!("{what}: {worker}: {cause}"),
            )?,
            other => return Err(format!("an initializer that {what}: {other:?}").into()),
        }
    }
    check(t.elapsed() < BOUND, "no respawn loop")
}

fn maxtasksperchild_replaces_workers(m: StartMethod) -> Result {
    let p = Pool::builder()
        .processes(2)
        .start_method(m)
        .maxtasksperchild(2)
        .initializer(init_name, ())
        .build()?;
    let names = p.map_chunked(my_name, 0..12, 1)?;
    let distinct: HashSet<&String> = names.iter().collect();
    check(distinct.len() >= 6, format!("12 tasks, 2 per worker: {distinct:?}"))?;
    let prefix = match m {
        StartMethod::Spawn => "SpawnPoolWorker-",
        StartMethod::ForkServer => "ForkServerPoolWorker-",
        StartMethod::Fork => "PoolWorker-",
    };
    check(names.iter().all(|n| n.contains(prefix)), format!("names {names:?}"))?;
    let pids = p.map_chunked(pid_of_worker, 0..8, 1)?;
    check(pids.iter().collect::<HashSet<_>>().len() >= 4, "fresh workers")
}

fn bad_input_is_refused(m: StartMethod) -> Result {
    check(matches!(pool(0, m), Err(PoolError::NoWorkers)), "zero processes")?;
    let p = pool(1, m)?;
    check(
        matches!(p.map_chunked(square, [1], 0), Err(PoolError::ZeroChunksize)),
        "chunksize 0",
    )?;
    check(matches!(p.join(), Err(PoolError::NotClosed)), "join before close")?;
    match p.map(makes_unserializable, [1, 2]) {
        Err(PoolError::Task(e)) if matches!(&e.failure, TaskFailure::EncodeResult(m) if m.contains("Unserializable")) =>
            {}
        other => return Err(format!("an unserialisable result: {other:?}").into()),
    }
    match p.map(takes_undeserializable, [Undeserializable(1)]) {
        Err(PoolError::Task(e)) if matches!(&e.failure, TaskFailure::DecodeArgument(_)) => {}
        other => return Err(format!("an argument that does not deserialise: {other:?}").into()),
    }
    match p.map(makes_unserializable_arg, [Unserializable2]) {
        Ok(_) => return Err("an unserialisable argument was taken".into()),
        Err(PoolError::Encode { index: 0, .. }) => {}
        Err(e) => return Err(format!("an unserialisable argument: {e}").into()),
    }
    p.terminate();
    check(matches!(p.map(square, [1]), Err(PoolError::Terminated)), "terminated")
}

fn makes_unserializable_arg(_: Unserializable2) -> u64 {
    0
}

/// An argument type whose serialisation fails in the caller.
#[derive(Debug, Deserialize)]
struct Unserializable2;

impl Serialize for Unserializable2 {
    fn serialize<S: Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no"))
    }
}

/// Kills workers at random during maps of 10 000 items; counts lost,
/// duplicated and hung results (all must be 0). `kills` in all.
fn random_kills(m: StartMethod, kills: usize) -> Result {
    let p = Pool::builder().processes(3).start_method(m).build()?;
    let mut seed = 0x5eed_u64 ^ (m as u64);
    let mut killed = 0;
    let mut died = 0;
    while killed < kills {
        let per_map = (kills - killed).min(100);
        let results: Vec<_> = std::thread::scope(|s| {
            let killing = s.spawn(|| {
                let mut n = 0;
                let mut last = p.finished();
                let t = Instant::now();
                while n < per_map && t.elapsed() < BOUND {
                    // Wait for the pool to make progress between kills (a
                    // handshake, not a sleep): some tasks finished since.
                    let now = p.finished();
                    if now < last + 50 {
                        std::thread::yield_now();
                        continue;
                    }
                    last = now;
                    let ws = p.workers();
                    if ws.is_empty() {
                        continue;
                    }
                    let pick = usize::try_from(next_random(&mut seed) % ws.len() as u64).expect("below the length");
                    let (pid, _) = ws[pick];
                    shmproc::sys::kill_pid(pid, 9);
                    n += 1;
                }
                n
            });
            let r: Vec<_> = p.imap_unordered_chunked(busy, 0..10_000u64, 4).expect("imap").collect();
            let n = killing.join().expect("killer");
            killed += n;
            r
        });
        let mut got = HashSet::new();
        for r in &results {
            match r {
                Ok(v) => {
                    check(got.insert(*v), format!("duplicated result {v}"))?;
                }
                Err(PoolError::Task(e)) if matches!(e.failure, TaskFailure::WorkerDied(Exit::Signal(9))) => {
                    check(
                        got.insert(busy(e.index as u64)),
                        format!("a result and an error for {}", e.index),
                    )?;
                    died += 1;
                }
                Err(e) => return Err(format!("unexpected error {e}").into()),
            }
        }
        check(results.len() == 10_000, format!("{} results of 10000", results.len()))?;
        let expect: HashSet<u64> = (0..10_000).map(busy).collect();
        check(got == expect, "lost results")?;
    }
    eprintln!("{killed} kills, {died} tasks failed with their worker");
    Ok(())
}

fn thousand_kills(m: StartMethod) -> Result {
    random_kills(m, if m == StartMethod::ForkServer { 1000 } else { 100 })
}

shmproc_tests::trials! {
    per_method {
        pool_interface => interface,
        pool_panics_fail_alone => panics_fail_alone,
        pool_deaths_fail_only_their_task => deaths_fail_only_their_task,
        pool_retries_rerun_the_killed_task => retries_rerun_the_killed_task,
        pool_overdue_tasks_fail_alone => overdue_tasks_fail_alone,
        pool_death_holding_a_lock_does_not_wedge => death_holding_a_lock_does_not_wedge,
        pool_dropping_terminates => dropping_terminates,
        pool_initializer_state_and_failures => initializer_state_and_failures,
        pool_maxtasksperchild_replaces_workers => maxtasksperchild_replaces_workers,
        pool_bad_input_is_refused => bad_input_is_refused,
        pool_random_kills_lose_nothing => thousand_kills,
    }
}
