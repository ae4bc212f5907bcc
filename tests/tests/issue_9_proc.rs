//! Issue 9, the process part, across real processes: function references
//! come only from a process bootstrap, fork is refused in a multi-threaded
//! process, every child may call `shmproc::init()`, `join` releases the child's
//! descriptors, and errors crossing the bootstrap keep their cause.
//!
//! A custom harness (`harness = false`) so that `main` can call `shmproc::init()`
//! first, as every shm program must for spawn and forkserver children.

use std::os::unix::fs::FileExt as _;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;

use shmproc::prelude::*;
use shmproc::{BootstrapError, FnRef, ProcessError};
use shmproc_tests::{HANG_GUARD, check, is_running, wait_gone};

type Result = shmproc_tests::TestResult;

/// Joins `p` within [`HANG_GUARD`]; kills it and fails loudly on a hang.
fn join_bounded(p: &Process, what: &str) -> std::result::Result<i32, String> {
    match p.join_timeout(HANG_GUARD) {
        Ok(Some(code)) => Ok(code),
        Ok(None) => {
            let _ = p.kill();
            let _ = p.join_timeout(HANG_GUARD);
            Err(format!("{what}: child hung (killed after {HANG_GUARD:?})"))
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

// ----- item 2: FnRef -----

/// Sends what an attacker would: an index into a table, and the former wire
/// form of a function reference (executable identity and a code offset).
fn send_forged(mut tx: Connection) -> std::result::Result<(), String> {
    tx.send(&0u32).map_err(|e| e.to_string())?;
    tx.send(&((1u64, 2u64), 0x1000u64)).map_err(|e| e.to_string())?;
    Ok(())
}

fn fn_ref_from_forged_bytes_is_an_error(m: StartMethod) -> Result {
    let (mut rx, tx) = Pipe::new(false)?;
    let p = Process::new(send_forged, tx).with_start_method(m);
    p.start()?;
    check(join_bounded(&p, "sender")? == 0, "the sender failed")?;
    for _ in 0..2 {
        let got = rx.recv::<FnRef>();
        check(got.is_err(), "forged bytes from a pipe became a function reference")?;
    }
    // Not through a queue either: it refuses to carry one, and the public
    // decoder never yields one.
    let q: Queue<FnRef> = Queue::new(4)?;
    check(
        q.put(FnRef::new(action_unit)).is_err(),
        "a queue carried a function reference",
    )?;
    let forged = postcard::to_allocvec(&0u32)?;
    let err = shmproc::handle::decode::<FnRef>(&forged, Vec::new()).expect_err("decoded a function reference");
    check(err.to_string().contains("bootstrap"), format!("unclear refusal: {err}"))
}

static ACTION_RAN: AtomicU8 = AtomicU8::new(0);

fn action(mark: u8) {
    // Relaxed: read by this same thread after the barrier returns.
    ACTION_RAN.store(mark, Relaxed);
}

fn action_unit() {
    action(1);
}

/// Exits 0 if the barrier's action ran here, in the child.
fn wait_at_barrier(b: Barrier) -> std::result::Result<(), String> {
    b.wait_timeout(HANG_GUARD).map_err(|e| e.to_string())?;
    // Relaxed: written by this thread inside `wait`.
    if ACTION_RAN.load(Relaxed) == 1 {
        Ok(())
    } else {
        Err("the barrier's action did not run".into())
    }
}

fn barrier_action_travels_by_bootstrap(m: StartMethod) -> Result {
    let b = Barrier::with_action(1, action, 1u8)?;
    let p = Process::new(wait_at_barrier, b).with_start_method(m);
    p.start()?;
    check(
        join_bounded(&p, "barrier child")? == 0,
        "the action did not run in the child",
    )
}

// ----- item 5: no fork from a multi-threaded parent -----

fn exit_zero(_: ()) {}

fn fork_with_threads_is_refused() -> Result {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv_timeout(HANG_GUARD));
    let closure = Process::from_closure(|| ());
    let by_closure = closure.start();
    let chosen = Process::new(exit_zero, ()).with_start_method(StartMethod::Fork);
    let by_choice = chosen.start();
    // Spawn and forkserver are fine with threads.
    let safe: Vec<Process> = [StartMethod::Spawn, StartMethod::ForkServer]
        .into_iter()
        .map(|m| Process::new(exit_zero, ()).with_start_method(m))
        .collect();
    let safe_started: Vec<_> = safe.iter().map(Process::start).collect();
    tx.send(())?;
    t.join().map_err(|_| "helper thread panicked")??;
    for r in [&by_closure, &by_choice] {
        match r {
            Err(e @ ProcessError::ForkWithThreads { threads, .. }) => {
                let text = e.to_string();
                check(
                    *threads >= 2 && text.contains("spawn or forkserver"),
                    format!("unclear refusal: {text}"),
                )?;
            }
            other => return Err(format!("fork with two threads: {other:?}").into()),
        }
    }
    for (p, r) in safe.iter().zip(safe_started) {
        r?;
        check(join_bounded(p, "child started beside a thread")? == 0, "exit code")?;
    }
    // The thread is joined: the same processes now start (a refused start
    // leaves the process startable).
    closure.start()?;
    chosen.start()?;
    check(join_bounded(&closure, "closure")? == 0, "closure exit code")?;
    check(join_bounded(&chosen, "fork child")? == 0, "fork child exit code")
}

// ----- item 9: init() in every child -----

/// Calls `init()` twice: it must return, and start no fork server of its own.
fn call_init(_: ()) -> std::result::Result<(), String> {
    let before = shmproc::forkserver_pid();
    shmproc::init();
    shmproc::init();
    let after = shmproc::forkserver_pid();
    if after == before {
        Ok(())
    } else {
        Err(format!(
            "init() in a child changed the fork server: {before:?} -> {after:?}"
        ))
    }
}

fn init_returns_in_children(m: StartMethod) -> Result {
    let p = Process::new(call_init, ()).with_start_method(m);
    p.start()?;
    check(join_bounded(&p, "child calling init()")? == 0, "exit code")
}

/// The same from a fork server restarted by spawning this executable (whose
/// children once inherited its private environment).
fn init_returns_in_children_of_a_respawned_server() -> Result {
    let pid = shmproc::forkserver_pid().ok_or("no fork server after init()")?;
    shmproc::sys::kill_pid(pid, 9);
    check(wait_gone(pid), "fork server did not die")?;
    for _ in 0..2 {
        init_returns_in_children(StartMethod::ForkServer)?;
    }
    let again = shmproc::forkserver_pid().ok_or("no server")?;
    check(again != pid && is_running(again), "server not replaced")
}

// ----- item 9: descriptors after join -----

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn join_releases_descriptors(m: StartMethod) -> Result {
    const N: usize = 60;
    // Warm up what is opened once per process (a pidfd of ourselves, the
    // fork server's socket).
    let warm = Process::new(exit_zero, ()).with_start_method(m);
    warm.start()?;
    join_bounded(&warm, "warm-up")?;
    drop(warm);
    let before = open_fds();
    let mut kept = Vec::with_capacity(N);
    for i in 0..N {
        let p = Process::new(exit_zero, ()).with_start_method(m);
        p.start()?;
        check(join_bounded(&p, "child")? == 0, "exit code")?;
        // Half dropped at once, half kept: join alone must release.
        if i % 2 == 0 {
            kept.push(p);
        }
    }
    let with_handles = open_fds();
    drop(kept);
    let after = open_fds();
    check(
        with_handles <= before + 2 && after <= before + 2,
        format!("{N} joined children: {before} descriptors before, {with_handles} with handles kept, {after} after"),
    )
}

// ----- item 9: errors crossing the bootstrap keep their cause -----

fn take_lock(l: Lock) {
    drop(l.acquire());
}

fn put_one(q: Queue<u32>) {
    let _ = q.put(1);
}

/// Makes an object with `make`, scribbles the magic of every segment it
/// made, passes it to a child running `target` and checks that the parent
/// learns the segment's own error, once worded.
fn damaged_object_reports_bad_magic<T>(m: StartMethod, make: impl FnOnce() -> T, target: fn(T)) -> Result
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let fds_before: Vec<_> = fd_names();
    let object = make();
    let new_fds: Vec<_> = fd_names().into_iter().filter(|f| !fds_before.contains(f)).collect();
    check(!new_fds.is_empty(), "the object's descriptors not found")?;
    for fd in &new_fds {
        // Scribble the segment's magic through a second descriptor of it.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))?;
        file.write_all_at(&[0xAB; 8], 0)?;
    }
    let p = Process::new(target, object).with_start_method(m);
    p.start()?;
    let joined = p.join_timeout(HANG_GUARD);
    let text = match &joined {
        Err(
            e @ ProcessError::Bootstrap {
                source: BootstrapError::Object(detail),
                ..
            },
        ) if detail.contains("not an shm segment: magic") => e.to_string(),
        other => {
            let _ = p.kill();
            return Err(format!("damaged object in a child: {other:?}").into());
        }
    };
    check(
        !text.contains("Serde") && text.matches("deserialise").count() <= 1 && text.contains("0xabababababababab"),
        format!("the cause is lost or repeated: {text}"),
    )
}

fn damaged_lock_reports_bad_magic(m: StartMethod) -> Result {
    damaged_object_reports_bad_magic(m, || Lock::new().expect("lock"), take_lock)
}

fn damaged_queue_reports_bad_magic(m: StartMethod) -> Result {
    damaged_object_reports_bad_magic(m, || Queue::<u32>::new(4).expect("queue"), put_one)
}

/// The descriptors of this process that are memfds (segments).
fn fd_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                target
                    .to_string_lossy()
                    .starts_with("/memfd:")
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
            .collect()
        })
        .unwrap_or_default()
}

shmproc_tests::trials! {
    per_method {
        fn_ref_from_forged_bytes_is_an_error,
        barrier_action_travels_by_bootstrap,
        init_returns_in_children,
        join_releases_descriptors,
    }
    spawned {
        damaged_lock_reports_bad_magic,
        damaged_queue_reports_bad_magic,
    }
    once {
        fork_with_threads_is_refused,
        init_returns_in_children_of_a_respawned_server,
    }
}
