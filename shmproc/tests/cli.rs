//! The `shm` command against live objects of real processes: anonymous
//! (memfd) objects made by children and by this process, a lock held by a
//! child killed by `SIGKILL`, a pool's workers, a manager's dict; `inspect`
//! of one, of one that vanished and of a scribbled header; `clean` that
//! removes only what no live process uses.

use std::os::unix::fs::FileExt;
use std::process::{Command, Output};
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use serde_json::Value;
use shmproc::{Lock, Manager, Pool, Process, Queue, RawArray, RawValue, Semaphore};

type Result<T = ()> = std::result::Result<T, libtest_mimic::Failed>;

/// Longest any wait of this test may take before it counts as a hang.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn shm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shm"))
        .args(args)
        .output()
        .expect("run shm")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(cond: bool, msg: impl Into<String>) -> Result {
    if cond { Ok(()) } else { Err(msg.into().into()) }
}

/// Waits until a child sets flag `i` (a handshake, bounded by `HANG_GUARD`).
fn wait_flag(flags: &RawArray<u32>, i: usize) -> Result {
    let start = Instant::now();
    // Acquire: pairs with the child's Release store.
    while flags.atomics()[i].load(Acquire) != 1 {
        check(
            start.elapsed() < HANG_GUARD,
            format!("child {i} never said it was ready"),
        )?;
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// For a child its parent kills: sleeps, and panics if nobody does.
fn sleep_until_killed() -> ! {
    std::thread::sleep(HANG_GUARD);
    panic!("not killed within {HANG_GUARD:?}");
}

/// A child that makes a queue of its own, puts three items, says so and
/// waits to be killed.
fn queue_maker(flags: RawArray<u32>) {
    let q = Queue::<u64>::new(10).expect("queue");
    for i in 0..3 {
        q.put(i).expect("room");
    }
    flags.atomics()[0].store(1, Release);
    sleep_until_killed();
}

/// A child that takes the lock, never lets go, says so and waits to be
/// killed.
fn lock_taker((lock, flags): (Lock, RawArray<u32>)) {
    std::mem::forget(lock.acquire().expect("free"));
    flags.atomics()[1].store(1, Release);
    sleep_until_killed();
}

fn square(x: u64) -> u64 {
    x * x
}

/// The listed objects, as `shm list --json` prints them.
fn listed() -> Result<Vec<Value>> {
    let out = shm(&["list", "--json"]);
    check(
        out.status.success(),
        format!("list failed: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    let v: Value = serde_json::from_str(&stdout(&out)).map_err(|e| format!("not JSON: {e}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn find<'a>(all: &'a [Value], what: &str, pick: impl Fn(&Value) -> bool) -> Result<&'a Value> {
    all.iter()
        .find(|o| pick(o))
        .ok_or_else(|| format!("no {what} in {all:#?}").into())
}

fn list_and_inspect_live_objects() -> Result {
    let flags = RawArray::<u32>::new(2).map_err(|e| e.to_string())?;
    let maker = Process::new(queue_maker, flags.clone());
    maker.start().map_err(|e| e.to_string())?;
    let lock = Lock::new().map_err(|e| e.to_string())?;
    let taker = Process::new(lock_taker, (lock.clone(), flags.clone()));
    taker.start().map_err(|e| e.to_string())?;
    wait_flag(&flags, 0)?;
    wait_flag(&flags, 1)?;
    let taker_pid = taker.pid().ok_or("no pid")?;
    taker.kill().map_err(|e| e.to_string())?;
    check(
        taker.join().map_err(|e| e.to_string())? == -9,
        "the lock taker was killed",
    )?;
    let sem = Semaphore::new(2).map_err(|e| e.to_string())?;
    let held = sem.acquire();
    let pool = Pool::new(2).map_err(|e| e.to_string())?;
    check(
        pool.map(square, 0..4u64).map_err(|e| e.to_string())? == [0, 1, 4, 9],
        "the pool works",
    )?;
    let manager = Manager::new().map_err(|e| e.to_string())?;
    let dict = manager.dict::<String, u64>().map_err(|e| e.to_string())?;
    dict.set(&"a".into(), &1).map_err(|e| e.to_string())?;
    dict.set(&"b".into(), &2).map_err(|e| e.to_string())?;

    let all = listed()?;
    let maker_pid = u64::from(maker.pid().ok_or("no pid")?);
    let q = find(&all, "queue of the child", |o| {
        o["kind"] == "queue" && o["creator"]["pid"] == maker_pid
    })?;
    check(
        q["state"]["items"] == 3 && q["state"]["maxsize"] == 10,
        format!("queue: {q:#}"),
    )?;
    check(
        q["id"].as_str().is_some_and(|id| id.starts_with("memfd:")),
        "an anonymous object",
    )?;
    let l = find(&all, "lock held by the killed child", |o| {
        o["kind"] == "lock" && o["state"]["holder"]["pid"] == u64::from(taker_pid)
    })?;
    check(l["state"]["holder"]["alive"] == false, format!("holder alive? {l:#}"))?;
    find(&all, "semaphore of value 1", |o| {
        o["kind"] == "semaphore" && o["state"]["value"] == 1
    })?;
    let p = find(&all, "pool", |o| o["kind"] == "pool" && o["state"]["workers"] == 2)?;
    let workers = p["state"]["worker"].as_array().cloned().unwrap_or_default();
    check(
        workers.len() == 2 && workers.iter().all(|w| w["alive"] == true),
        format!("pool: {p:#}"),
    )?;
    find(&all, "manager dict of 2 entries", |o| {
        o["kind"] == "manager container" && o["state"]["container"] == "dict" && o["state"]["entries"] == 2
    })?;

    // The table and `inspect` say the same of the lock.
    let id = l["id"].as_str().ok_or("an id")?;
    let table = stdout(&shm(&["list"]));
    let row = table.lines().find(|r| r.starts_with(id)).ok_or("the lock's row")?;
    check(
        row.contains(&format!("holder=pid{taker_pid}(dead)")),
        format!("row: {row}"),
    )?;
    let out = shm(&["inspect", id]);
    let text = stdout(&out);
    check(out.status.success(), format!("inspect failed: {text}"))?;
    check(
        text.contains("kind:      lock") && text.contains(&format!("holder:    pid {taker_pid} (dead)")),
        format!("inspect: {text}"),
    )?;
    // An object that is gone.
    let gone = shm(&["inspect", "memfd:1"]);
    check(
        gone.status.code() == Some(3) && String::from_utf8_lossy(&gone.stderr).contains("no live object"),
        "a vanished object is a clear error",
    )?;

    drop(held);
    maker.kill().map_err(|e| e.to_string())?;
    check(
        maker.join().map_err(|e| e.to_string())? == -9,
        "the queue maker was killed",
    )?;
    drop(pool);
    Ok(())
}

fn scribbled_header_and_clean() -> Result {
    let name = format!("shm-cli-test-{}", std::process::id());
    let value = RawValue::create_named(&name, 5u32).map_err(|e| e.to_string())?;
    let path = format!("/dev/shm/{name}");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    // A creator that does not exist (its pid field, at offset 64).
    f.write_all_at(&u32::MAX.to_le_bytes(), 64).map_err(|e| e.to_string())?;
    let row = stdout(&shm(&["list"]));
    check(
        row.lines()
            .any(|l| l.starts_with(&name) && l.contains("dead") && l.contains("value")),
        format!("list: {row}"),
    )?;
    // This process still maps it: clean leaves it.
    let cleaned = stdout(&shm(&["clean"]));
    check(
        !cleaned.contains(&name) && std::path::Path::new(&path).exists(),
        format!("clean: {cleaned}"),
    )?;
    check(value.get() == 5, "the value is untouched")?;
    // A scribbled layout version (offset 8): listed and inspected as invalid.
    f.write_all_at(&0xdead_u32.to_le_bytes(), 8)
        .map_err(|e| e.to_string())?;
    let out = shm(&["inspect", &name]);
    let text = stdout(&out);
    check(
        out.status.code() == Some(4) && text.contains("header:    invalid:"),
        format!("inspect: {text}"),
    )?;
    // No live process uses it any more (the file we wrote through counted
    // too): clean removes it.
    drop(value);
    drop(f);
    let cleaned = stdout(&shm(&["clean"]));
    check(
        cleaned.contains(&format!("removed {name}")) && !std::path::Path::new(&path).exists(),
        format!("clean: {cleaned}"),
    )?;
    Ok(())
}

fn unknown_command_prints_usage() -> Result {
    let out = shm(&["bogus"]);
    check(
        out.status.code() == Some(2) && String::from_utf8_lossy(&out.stderr).contains("usage"),
        "usage",
    )
}

fn main() {
    shmproc::init();
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    let tests = vec![
        libtest_mimic::Trial::test("list_and_inspect_live_objects", list_and_inspect_live_objects),
        libtest_mimic::Trial::test("scribbled_header_and_clean", scribbled_header_and_clean),
        libtest_mimic::Trial::test("unknown_command_prints_usage", unknown_command_prints_usage),
    ];
    libtest_mimic::run(&args, tests).exit();
}
