//! The manager's containers and served types across real processes:
//! writers `SIGKILLed` at random points leave every container as it was
//! before the operation they were in or after it (checked against a model
//! after each of more than a thousand kills), concurrent read-modify-writes
//! lose nothing, growth in one process is seen by the others, and a dead
//! manager process fails calls instead of hanging them.
//!
//! Every wait is bounded and fails loudly; order comes from handshakes (a
//! shared progress counter), never from sleeps. The random pause before a
//! kill only spreads the kills over the operations.

#![allow(clippy::cast_possible_truncation, reason = "test indices are small")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shmproc::{Dict, Dynamic, List, Manager, ManagerError, Namespace, Process, Proxy, RawValue, StartMethod};
use shmproc_tests::{check, next_random};

type Result = shmproc_tests::TestResult;

/// Bound on any one wait in these tests: only a guard against hangs.
const BOUND: Duration = Duration::from_secs(30);

// ----- the dict's operation stream, run by the writer and by the model -----

/// Operation `i` of the dict stream: mostly sets over 600 keys, with
/// removes, small and bulk updates, and a clear now and then (so the table
/// is rebuilt and grown again and again).
fn dict_op(d: &Dict<u64, u64>, i: u64) -> std::result::Result<(), ManagerError> {
    match i % 500 {
        499 => d.clear(),
        250 => {
            let items: Vec<(u64, u64)> = (0..1100).map(|k| (10_000 + k, i)).collect();
            d.update(items.iter().map(|(k, v)| (k, v)))
        }
        n if n % 50 == 49 => {
            let items: Vec<(u64, u64)> = (0..20).map(|k| ((i + k * 13) % 600, k)).collect();
            d.update(items.iter().map(|(k, v)| (k, v)))
        }
        n if n % 10 == 7 => d.remove(&((i * 3) % 600)).map(drop),
        _ => d.set(&((i * 7) % 600), &i),
    }
}

fn dict_model(m: &mut BTreeMap<u64, u64>, i: u64) {
    match i % 500 {
        499 => m.clear(),
        250 => m.extend((0..1100).map(|k| (10_000 + k, i))),
        n if n % 50 == 49 => m.extend((0..20).map(|k| ((i + k * 13) % 600, k))),
        n if n % 10 == 7 => drop(m.remove(&((i * 3) % 600))),
        _ => drop(m.insert((i * 7) % 600, i)),
    }
}

fn dict_writer((d, done, start): (Dict<u64, u64>, RawValue<u64>, u64)) -> std::result::Result<(), ManagerError> {
    let mut i = start;
    loop {
        dict_op(&d, i)?;
        i += 1;
        done.set(i);
    }
}

// ----- the list's operation stream -----

fn list_op(l: &List<u64>, i: u64) -> std::result::Result<(), ManagerError> {
    let len = l.len()? as u64;
    match i % 300 {
        299 => l.clear(),
        n if n % 20 == 11 && len > 0 => l.insert(((i * 5) % len) as usize, &i),
        n if n % 20 == 12 && len > 0 => l.pop().map(drop),
        n if n % 20 == 13 => l.sort(),
        n if n % 20 == 14 => l.reverse(),
        n if n % 20 == 15 && len > 0 => l.set(((i * 3) % len) as usize, &i),
        n if n % 20 == 16 && len > 1 => l.pop_at(((i * 11) % len) as usize).map(drop),
        n if n % 20 == 17 => l.extend(&[i, i + 1, i + 2]),
        _ => l.push(&i),
    }
}

fn list_model(m: &mut Vec<u64>, i: u64) {
    let len = m.len() as u64;
    match i % 300 {
        299 => m.clear(),
        n if n % 20 == 11 && len > 0 => m.insert(((i * 5) % len) as usize, i),
        n if n % 20 == 12 && len > 0 => drop(m.pop()),
        n if n % 20 == 13 => m.sort_unstable(),
        n if n % 20 == 14 => m.reverse(),
        n if n % 20 == 15 && len > 0 => m[((i * 3) % len) as usize] = i,
        n if n % 20 == 16 && len > 1 => drop(m.remove(((i * 11) % len) as usize)),
        n if n % 20 == 17 => m.extend([i, i + 1, i + 2]),
        _ => m.push(i),
    }
}

fn list_writer((l, done, start): (List<u64>, RawValue<u64>, u64)) -> std::result::Result<(), ManagerError> {
    let mut i = start;
    loop {
        list_op(&l, i)?;
        i += 1;
        done.set(i);
    }
}

/// Starts a writer, waits until it has finished one more operation, lets it
/// run a random little while, kills it and reaps it. Returns how many
/// operations it finished.
fn run_and_kill(p: &Process, done: &RawValue<u64>, start: u64, seed: &mut u64) -> std::result::Result<u64, String> {
    p.start().map_err(|e| e.to_string())?;
    let t = Instant::now();
    while done.get() <= start {
        if t.elapsed() > BOUND {
            return Err(format!(
                "the writer never finished an operation (exit {:?})",
                p.exitcode()
            ));
        }
        if let Some(code) = p.exitcode() {
            return Err(format!("the writer ended with {code} before its first operation"));
        }
        std::hint::spin_loop();
    }
    let pause = Instant::now() + Duration::from_micros(next_random(seed) % 400);
    while Instant::now() < pause {
        std::hint::spin_loop();
    }
    p.kill().map_err(|e| e.to_string())?;
    p.join_timeout(BOUND)
        .map_err(|e| e.to_string())?
        .ok_or("the killed writer was not reaped")?;
    Ok(done.get())
}

/// A writer of each container is killed at random points, `kills` times;
/// after each kill the container must equal the model after the operations
/// the writer finished, or after one more (the one it was in).
fn dict_kills(kills: u32) -> Result {
    let d = Dict::<u64, u64>::new()?;
    let done = RawValue::new(0u64)?;
    let mut model = BTreeMap::new();
    let mut applied = 0u64;
    let mut seed = 0x5EED_1234_u64;
    let mut in_between = 0u32;
    for _ in 0..kills {
        let p = Process::new(dict_writer, (d.clone(), done.clone(), applied)).with_start_method(StartMethod::Fork);
        done.set(applied);
        let finished = run_and_kill(&p, &done, applied, &mut seed)?;
        while applied < finished {
            dict_model(&mut model, applied);
            applied += 1;
        }
        let now: BTreeMap<u64, u64> = d.items()?.into_iter().collect();
        if now != model {
            let mut after = model.clone();
            dict_model(&mut after, applied);
            check(
                now == after,
                format!("dict after a kill in op {applied}: neither before nor after it"),
            )?;
            in_between += 1;
            model = after;
            applied += 1;
        }
    }
    check(applied > u64::from(kills), "the writers made progress")?;
    eprintln!("{kills} kills over {applied} dict operations; {in_between} landed inside one that completed");
    // Still fully usable.
    d.set(&1, &2)?;
    check(d.get(&1)? == Some(2), "the dict works after the kills")
}

fn list_kills(kills: u32) -> Result {
    let l = List::<u64>::new()?;
    let done = RawValue::new(0u64)?;
    let mut model = Vec::new();
    let mut applied = 0u64;
    let mut seed = 0xC0FF_EE11_u64;
    for _ in 0..kills {
        let p = Process::new(list_writer, (l.clone(), done.clone(), applied)).with_start_method(StartMethod::Fork);
        done.set(applied);
        let finished = run_and_kill(&p, &done, applied, &mut seed)?;
        while applied < finished {
            list_model(&mut model, applied);
            applied += 1;
        }
        let now = l.to_vec()?;
        if now != model {
            let mut after = model.clone();
            list_model(&mut after, applied);
            check(
                now == after,
                format!("list after a kill in op {applied}: neither before nor after it"),
            )?;
            model = after;
            applied += 1;
        }
    }
    eprintln!("{kills} kills over {applied} list operations");
    l.push(&7)?;
    check(l.pop()? == Some(7), "the list works after the kills")
}

fn dict_writers_killed_anywhere() -> Result {
    dict_kills(600)
}

fn list_writers_killed_anywhere() -> Result {
    list_kills(500)
}

// ----- concurrent read-modify-writes -----

fn increment((d, ns, n): (Dict<String, u64>, Namespace, u32)) -> std::result::Result<(), ManagerError> {
    for _ in 0..n {
        d.modify(&"n".to_owned(), |v| *v.get_or_insert(0) += 1)?;
        ns.modify("n", |v: &mut u64| *v += 1)?;
    }
    Ok(())
}

fn increments_lose_nothing(m: StartMethod) -> Result {
    let d = Dict::<String, u64>::new()?;
    let ns = Namespace::new()?;
    ns.set("n", &0u64)?;
    let procs: Vec<Process> = (0..2)
        .map(|_| Process::new(increment, (d.clone(), ns.clone(), 5000)).with_start_method(m))
        .collect();
    shmproc_tests::run_all(&procs)?;
    check(
        d.get(&"n".to_owned())? == Some(10_000),
        format!("dict: {:?}", d.get(&"n".to_owned())?),
    )?;
    check(
        ns.get::<u64>("n")? == 10_000,
        format!("namespace: {}", ns.get::<u64>("n")?),
    )
}

// ----- growth -----

fn grow((d, l): (Dict<u64, String>, List<Dynamic>)) -> std::result::Result<(), ManagerError> {
    let items: Vec<(u64, String)> = (0..50_000).map(|i| (i, format!("value {i}"))).collect();
    d.update(items.iter().map(|(k, v)| (k, v)))?;
    for i in 0..20_000 {
        l.push(&Dynamic::Int(i))?;
    }
    l.push(&Dynamic::Bytes(vec![7; 1 << 20]))
}

fn growth_is_seen_everywhere(m: StartMethod) -> Result {
    let d = Dict::<u64, String>::new()?;
    let l = List::<Dynamic>::new()?;
    d.set(&0, &"first".into())?;
    let p = Process::new(grow, (d.clone(), l.clone())).with_start_method(m);
    shmproc_tests::run_all(&[p])?;
    check(d.len()? == 50_000, format!("dict length {}", d.len()?))?;
    check(d.get(&49_999)?.as_deref() == Some("value 49999"), "the last key")?;
    check(d.get(&0)?.as_deref() == Some("value 0"), "the first key, set again")?;
    check(l.len()? == 20_001, format!("list length {}", l.len()?))?;
    check(l.get(19_999)? == Dynamic::Int(19_999), "an element")?;
    check(l.get(20_000)? == Dynamic::Bytes(vec![7; 1 << 20]), "a 1 MiB element")
}

// ----- served types -----

#[derive(serde::Serialize, serde::Deserialize)]
struct Counter {
    n: u64,
}

impl Counter {
    fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn boom(&mut self) {
        panic!("boom at {}", self.n);
    }
}

shmproc::served! {
    impl Counter as CounterHandle {
        attrs { n: u64 }
        fn bump(&mut self) -> u64;
        fn boom(&mut self);
    }
}

fn bump_many((c, n): (Proxy<Counter>, u32)) -> std::result::Result<(), ManagerError> {
    for _ in 0..n {
        c.bump()?;
    }
    Ok(())
}

fn served_calls_from_children(m: StartMethod) -> Result {
    let manager = Manager::builder().register::<Counter>().start_method(m).start()?;
    let c = manager.create(Counter { n: 0 })?;
    let procs: Vec<Process> = (0..3)
        .map(|_| Process::new(bump_many, (c.clone(), 1000)).with_start_method(m))
        .collect();
    shmproc_tests::run_all(&procs)?;
    check(
        c.getattr::<u64>("n")? == 3000,
        format!("served count {}", c.getattr::<u64>("n")?),
    )?;
    let e = c.boom().expect_err("a panicking method");
    check(
        e.to_string() == "Counter.boom failed: panicked: boom at 3000",
        format!("panic reported as: {e}"),
    )?;
    check(c.bump()? == 3001, "the object lives on after a panic")?;
    let e = c.getattr::<u64>("missing").expect_err("no such attribute");
    check(e.to_string().contains("missing"), format!("{e}"))?;
    // postcard is not self-describing: an empty value is what fails to
    // read as a u64.
    let e = c.setattr("n", &()).expect_err("wrong type");
    check(e.to_string().contains("Counter.n"), format!("{e}"))
}

fn manager_death_fails_calls() -> Result {
    let manager = Manager::builder().register::<Counter>().start()?;
    let c = manager.create(Counter { n: 0 })?;
    c.bump()?;
    let pid = manager.server_pid().ok_or("a manager process")?;
    shmproc::sys::kill_pid(pid, 9);
    let t = Instant::now();
    let e = c.bump().expect_err("the manager process is dead");
    let took = t.elapsed();
    check(
        matches!(e, ManagerError::ManagerGone { pid: p, .. } if p == pid),
        format!("{e} (the manager process was {pid})"),
    )?;
    check(took < BOUND, format!("took {took:?}"))?;
    eprintln!("a call to a dead manager process failed after {took:?}: {e}");
    let e = manager.create(Counter { n: 1 }).expect_err("gone");
    check(matches!(e, ManagerError::ManagerGone { .. }), format!("{e}"))
}

// ----- handles sent after the receiver started -----

type Parcel = (
    Dict<String, u64>,
    List<String>,
    Namespace,
    Proxy<Counter>,
    shmproc::Lock,
);

/// Receives handles on a queue and over a pipe after it started, uses
/// them, and says so.
fn receiver(
    (inbox, mut conn, done): (shmproc::Queue<Parcel>, shmproc::Connection, shmproc::Queue<String>),
) -> std::result::Result<(), shmproc::Error> {
    let (d, l, ns, c, lock) = inbox.get_timeout(BOUND)?;
    {
        let _g = lock.acquire()?;
        d.set(&"from the queue".to_owned(), &1)?;
        l.push(&"queued".to_owned())?;
        ns.set("seen", &true)?;
        c.bump()?;
    }
    let more: Dict<String, u64> = conn.recv_timeout(BOUND)?;
    more.set(&"from the pipe".to_owned(), &2)?;
    done.put("done".to_owned())?;
    Ok(())
}

fn handles_travel_after_start(m: StartMethod) -> Result {
    let manager = Manager::builder().register::<Counter>().start_method(m).start()?;
    let inbox = shmproc::Queue::<Parcel>::new(4)?;
    let done = shmproc::Queue::<String>::new(4)?;
    let (mut ours, theirs) = shmproc::Pipe::new(true)?;
    let p = Process::new(receiver, (inbox.clone(), theirs, done.clone())).with_start_method(m);
    p.start()?;
    let (dict, list, ns) = (manager.dict()?, manager.list()?, manager.namespace()?);
    let counter = manager.create(Counter { n: 41 })?;
    // The sender holds what it sends until the receiver has it (a handle in
    // a message refers to the sender's own).
    let lock = manager.lock()?;
    inbox
        .put((dict.clone(), list.clone(), ns.clone(), counter.clone(), lock.clone()))
        .map_err(|e| e.to_string())?;
    let more = manager.dict::<String, u64>()?;
    ours.send(&more)?;
    check(done.get_timeout(BOUND)? == "done", "the receiver finished")?;
    check(p.join_timeout(BOUND)? == Some(0), "the receiver exited cleanly")?;
    check(
        dict.get(&"from the queue".to_owned())? == Some(1),
        "dict from the queue",
    )?;
    check(list.to_vec()? == ["queued"], "list from the queue")?;
    check(ns.get::<bool>("seen")?, "namespace from the queue")?;
    check(counter.getattr::<u64>("n")? == 42, "proxy from the queue")?;
    check(more.get(&"from the pipe".to_owned())? == Some(2), "dict over the pipe")
}

/// A handle whose sender dropped the object before it was received is a
/// clear error naming why.
fn a_dropped_handle_in_a_message_is_a_clear_error() -> Result {
    let q = shmproc::Queue::<Dict<u8, u8>>::new(2)?;
    q.put(Dict::new()?).map_err(|e| e.to_string())?;
    let e = q.get_timeout(BOUND).expect_err("the dict was dropped with its message");
    check(
        e.to_string().contains("good only while its sender holds the object"),
        format!("{e}"),
    )?;
    Ok(())
}

fn unregistered_types_are_refused() -> Result {
    let manager = Manager::new()?;
    let e = manager.create(Counter { n: 0 }).expect_err("not registered");
    check(e.to_string().contains("not registered"), format!("{e}"))
}

shmproc_tests::trials! {
    per_method {
        manager_increments_lose_nothing => increments_lose_nothing,
        manager_growth_is_seen_everywhere => growth_is_seen_everywhere,
        manager_served_calls_from_children => served_calls_from_children,
        manager_handles_travel_after_start => handles_travel_after_start,
    }
    once {
        manager_dict_writers_killed_anywhere => dict_writers_killed_anywhere,
        manager_list_writers_killed_anywhere => list_writers_killed_anywhere,
        manager_death_fails_calls => manager_death_fails_calls,
        manager_unregistered_types_are_refused => unregistered_types_are_refused,
        manager_dropped_handle_in_a_message => a_dropped_handle_in_a_message_is_a_clear_error,
    }
}
