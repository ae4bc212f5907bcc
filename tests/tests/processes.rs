//! The process API across real processes, under every start method:
//! Python's semantics of start, join, exit codes, names, parents, children.
//!
//! A custom harness (`harness = false`) so that `main` can call `shmproc::init()`
//! first, as every shm program must for spawn and forkserver children.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use shmproc::{Process, ProcessError, RawValue, StartMethod};
use shmproc_tests::{check, is_running, wait_gone};

type Result = shmproc_tests::TestResult;

// ----- targets (plain functions: they run in the children) -----

fn noop(_: ()) {}

/// Waits until the parent sets `gate` to 1 (bounded by a hang guard).
fn wait_for_gate(gate: RawValue<u32>) {
    for _ in 0..120_000 {
        // Acquire: pairs with the parent's Release store.
        if gate.load(Acquire) == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::process::exit(99);
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn fails(_: ()) -> std::result::Result<(), String> {
    Err("the target returned an error".into())
}

fn check_family((parent_pid, my_name): (u32, String)) -> std::result::Result<(), String> {
    let parent = shmproc::parent_process().ok_or("no parent")?;
    let me = shmproc::current_process();
    if parent.pid() != parent_pid || parent.name() != "MainProcess" || !parent.is_alive() {
        return Err(format!("wrong parent {parent:?}"));
    }
    if me.name() != my_name || me.pid() != std::process::id() {
        return Err(format!("wrong self {me:?}"));
    }
    if !matches!(me.join(), Err(ProcessError::JoinSelf)) {
        return Err("joining oneself did not fail".into());
    }
    Ok(())
}

fn grandchild(expected: String) -> std::result::Result<(), String> {
    let me = shmproc::current_process();
    let parent = shmproc::parent_process().ok_or("no parent")?;
    let expected_parent = expected.rsplit_once(':').map(|(p, _)| p.to_owned()).unwrap_or_default();
    if me.name() == expected && parent.name() == expected_parent {
        Ok(())
    } else {
        Err(format!(
            "grandchild named {} (parent {}), expected {expected}",
            me.name(),
            parent.name()
        ))
    }
}

fn start_grandchild(method: StartMethod) -> std::result::Result<(), String> {
    let me = shmproc::current_process().name().to_owned();
    let p = Process::new(grandchild, format!("{me}:1")).with_start_method(method);
    p.start().map_err(|e| e.to_string())?;
    match p.join() {
        Ok(0) => Ok(()),
        other => Err(format!("grandchild ended with {other:?}")),
    }
}

fn checksum(data: Vec<u8>) -> std::result::Result<(), String> {
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let expected: u64 = (0..data.len()).map(|i| (i % 251) as u64).sum();
    if data.len() == 3 << 20 && sum == expected {
        Ok(())
    } else {
        Err(format!("got {} bytes, sum {sum}", data.len()))
    }
}

/// Started by [`starts_orphan`]: checks that its parent is alive, lets the
/// test kill it, then waits for it to end with `ParentProcess::join_timeout`.
/// Writes its verdict in `result` (100: all held).
fn waits_for_parent((flag, result): (RawValue<u32>, RawValue<u32>)) {
    let verdict = (|| -> std::result::Result<u32, u32> {
        let parent = shmproc::parent_process().ok_or(4_u32)?;
        if parent.join_timeout(Duration::ZERO) || !parent.is_alive() {
            return Err(1); // the parent waits for `flag`: it must be alive
        }
        // Release: pairs with the test's Acquire in `wait_flag`.
        flag.store(1, Release);
        if !parent.join_timeout(shmproc_tests::HANG_GUARD) {
            return Err(2);
        }
        parent.join(); // ended: returns at once
        if parent.is_alive() {
            return Err(3);
        }
        Ok(100)
    })();
    // Release: pairs with the test's Acquire load.
    result.store(verdict.unwrap_or_else(|e| e), Release);
}

/// Starts [`waits_for_parent`] and waits to be killed.
fn starts_orphan((flag, result, m): (RawValue<u32>, RawValue<u32>, StartMethod)) {
    let p = Process::new(waits_for_parent, (flag.clone(), result.clone())).with_start_method(m);
    if p.start().is_err() {
        result.store(5, Release);
        flag.store(1, Release);
    }
    shmproc_tests::sleep_until_killed();
}

// ----- tests -----

fn lifecycle(m: StartMethod) -> Result {
    let gate = RawValue::new(0u32)?;
    let p = Process::new(wait_for_gate, gate.clone()).with_start_method(m);
    check(p.pid().is_none(), "pid before start")?;
    check(p.exitcode().is_none(), "exit code before start")?;
    check(!p.is_alive(), "alive before start")?;
    check(
        matches!(p.join(), Err(ProcessError::NotStarted { .. })),
        "join before start",
    )?;
    check(
        matches!(p.terminate(), Err(ProcessError::NotStarted { .. })),
        "terminate before start",
    )?;
    p.start()?;
    check(
        matches!(p.start(), Err(ProcessError::AlreadyStarted { .. })),
        "second start",
    )?;
    check(
        matches!(p.set_daemon(true), Err(ProcessError::AlreadyRunning { .. })),
        "daemon after start",
    )?;
    let pid = p.pid().ok_or("no pid after start")?;
    check(pid != std::process::id(), "child has our pid")?;
    check(p.is_alive(), "not alive while waiting")?;
    check(p.exitcode().is_none(), "exit code while running")?;
    check(
        p.join_timeout(Duration::from_millis(20))?.is_none(),
        "join_timeout returned while running",
    )?;
    check(
        shmproc::active_children().iter().any(|c| c.pid() == Some(pid)),
        "not among active children",
    )?;
    // Release: pairs with the child's Acquire load.
    gate.store(1, Release);
    check(p.join()? == 0, "exit code")?;
    check(p.exitcode() == Some(0) && !p.is_alive(), "state after join")?;
    check(p.join_timeout(Duration::ZERO)? == Some(0), "second join")?;
    check(
        !is_running(pid) && !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "zombie left after join",
    )?;
    check(p.terminate().is_ok(), "terminate after exit is a no-op")?;
    Ok(())
}

fn exit_codes(m: StartMethod) -> Result {
    let p = Process::new(exit_with, 7).with_start_method(m);
    p.start()?;
    check(p.join()? == 7, "explicit exit code")?;
    let p = Process::new(fails, ()).with_start_method(m);
    p.start()?;
    check(p.join()? == 1, "Err return gives 1")?;
    let gate = RawValue::new(0u32)?;
    let t = Process::new(wait_for_gate, gate.clone()).with_start_method(m);
    let k = Process::new(wait_for_gate, gate).with_start_method(m);
    t.start()?;
    k.start()?;
    t.terminate()?;
    k.kill()?;
    check(t.join()? == -15, "terminate gives -SIGTERM")?;
    check(k.join()? == -9, "kill gives -SIGKILL")?;
    Ok(())
}

fn family(m: StartMethod) -> Result {
    check(shmproc::parent_process().is_none(), "main has a parent")?;
    check(shmproc::current_process().name() == "MainProcess", "main's name")?;
    check(
        matches!(shmproc::current_process().join(), Err(ProcessError::JoinSelf)),
        "join self",
    )?;
    let q = Process::new(noop, ()).with_start_method(m);
    let n: u32 = q
        .name()
        .strip_prefix("Process-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("default name {}", q.name()))?;
    // The next process takes the next number; the child checks it sees it.
    let expected = format!("Process-{}", n + 1);
    let p = Process::new(check_family, (std::process::id(), expected)).with_start_method(m);
    p.start()?;
    check(p.join()? == 0, "child saw a wrong family")?;
    let p = Process::new(check_family, (std::process::id(), "custom".into()))
        .with_start_method(m)
        .with_name("custom");
    p.start()?;
    check(p.join()? == 0, "child did not see its custom name")?;
    let p = Process::new(start_grandchild, m).with_start_method(m);
    p.start()?;
    check(p.join()? == 0, "nested names")?;
    Ok(())
}

/// A child's `parent_process().join_timeout(d)` is false while the parent
/// runs and true once it was killed (across real processes).
fn parent_join_sees_the_parent_end(m: StartMethod) -> Result {
    let (flag, result) = (RawValue::new(0u32)?, RawValue::new(0u32)?);
    let middle = Process::new(starts_orphan, (flag.clone(), result.clone(), m)).with_start_method(m);
    middle.start()?;
    shmproc_tests::wait_flag(&flag);
    middle.kill()?;
    check(middle.join()? == -9, "the middle process was not killed")?;
    // Acquire: pairs with the orphan's Release store.
    shmproc_tests::wait_until("the orphan's verdict", || result.load(Acquire) != 0);
    let verdict = result.load(Acquire);
    check(
        verdict == 100,
        format!("the orphan's parent join failed: code {verdict}"),
    )
}

fn reaps_dropped_children(m: StartMethod) -> Result {
    let p = Process::new(noop, ()).with_start_method(m);
    p.start()?;
    let pid = p.pid().ok_or("pid")?;
    drop(p);
    check(wait_gone(pid), "child did not end")?;
    for _ in 0..10_000 {
        if shmproc::active_children().iter().all(|c| c.pid() != Some(pid)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    check(
        shmproc::active_children().iter().all(|c| c.pid() != Some(pid)),
        "ended child still listed",
    )?;
    check(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || m == StartMethod::ForkServer,
        "zombie",
    )?;
    Ok(())
}

fn large_arguments(m: StartMethod) -> Result {
    let data: Vec<u8> = (0u32..3 << 20).map(|i| u8::try_from(i % 251).expect("< 251")).collect();
    let p = Process::new(checksum, data).with_start_method(m);
    p.start()?;
    check(p.join()? == 0, "3 MiB argument arrived damaged")
}

fn closures_need_fork() -> Result {
    let counter = RawValue::new(0u64)?;
    let c = counter.clone();
    let p = Process::from_closure(move || {
        c.fetch_add(41, Relaxed);
    });
    check(p.start_method() == StartMethod::Fork, "closures use fork")?;
    p.start()?;
    check(p.join()? == 0 && counter.load(Relaxed) == 41, "closure ran")?;
    let p = Process::from_closure(|| ()).with_start_method(StartMethod::Spawn);
    check(
        matches!(p.start(), Err(ProcessError::ClosureNeedsFork)),
        "closure under spawn",
    )?;
    check(p.pid().is_none(), "a refused start starts nothing")?;
    Ok(())
}

fn only_the_parent_joins() -> Result {
    let gate = RawValue::new(0u32)?;
    let sibling = Process::new(wait_for_gate, gate.clone()).with_start_method(StartMethod::Fork);
    sibling.start()?;
    let s = sibling.clone();
    let p = Process::from_closure(move || match s.join() {
        Err(ProcessError::NotOurChild { .. }) => 0,
        _ => 1,
    });
    p.start()?;
    let code = p.join()?;
    gate.store(1, Release);
    sibling.join()?;
    check(code == 0, "a sibling could join")
}

fn start_method_is_set_once() -> Result {
    let current = shmproc::get_start_method();
    check(
        shmproc::set_start_method(StartMethod::Spawn, false).is_err(),
        "set after use without force",
    )?;
    shmproc::set_start_method(StartMethod::Spawn, true)?;
    check(shmproc::get_start_method() == StartMethod::Spawn, "forced")?;
    shmproc::set_start_method(current, true)?;
    check(
        shmproc::get_context(Some(StartMethod::Fork)).start_method() == StartMethod::Fork,
        "context",
    )?;
    check(shmproc::get_all_start_methods().len() == 3, "all methods")?;
    check("bogus".parse::<StartMethod>().is_err(), "unknown method name")?;
    check(shmproc::cpu_count() >= 1, "cpu_count")
}

/// `forkserver_pid()` names the running fork server: a live process other
/// than this one, which starts forkserver children and is their parent.
fn forkserver_pid_names_the_server() -> Result {
    let p = Process::new(exit_with, 4).with_start_method(StartMethod::ForkServer);
    p.start()?;
    let server = shmproc::forkserver_pid().ok_or("no fork server pid after a forkserver start")?;
    check(
        server != std::process::id() && is_running(server),
        "the fork server pid names no live server",
    )?;
    let child = p.pid().ok_or("pid")?;
    let ppid = std::fs::read_to_string(format!("/proc/{child}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 1..].split_whitespace().nth(1)?.parse::<u32>().ok());
    // The child may already be reaped; while it exists, its parent is the server.
    check(
        ppid.is_none_or(|pp| pp == server),
        format!("child's parent {ppid:?}, server {server}"),
    )?;
    check(p.join()? == 4, "child of the server")
}

fn fork_server_restarts() -> Result {
    let pid = shmproc::forkserver_pid().ok_or("no fork server after init()")?;
    shmproc::sys::kill_pid(pid, 9);
    check(wait_gone(pid), "fork server did not die")?;
    let p = Process::new(exit_with, 5).with_start_method(StartMethod::ForkServer);
    p.start()?;
    check(p.join()? == 5, "child of the restarted server")?;
    let again = shmproc::forkserver_pid().ok_or("no server")?;
    check(again != pid && is_running(again), "server not replaced")
}

fn fork_server_death_is_reported_not_hung() -> Result {
    let gate = RawValue::new(0u32)?;
    let p = Process::new(wait_for_gate, gate.clone()).with_start_method(StartMethod::ForkServer);
    p.start()?;
    let server = shmproc::forkserver_pid().ok_or("no fork server")?;
    shmproc::sys::kill_pid(server, 9);
    check(wait_gone(server), "fork server did not die")?;
    gate.store(1, Release);
    let joined = p.join();
    check(
        matches!(joined, Err(ProcessError::StatusLost { .. })),
        format!("joining a child whose server died: {joined:?}"),
    )?;
    check(!p.is_alive(), "alive after a lost status")?;
    // The next start brings a new server.
    let q = Process::new(exit_with, 3).with_start_method(StartMethod::ForkServer);
    q.start()?;
    check(q.join()? == 3, "child of the new server")
}

fn threads_start_children_concurrently(m: StartMethod) -> Result {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || -> std::result::Result<(), String> {
                for k in 0..10 {
                    let code = t * 10 + k;
                    let p = Process::new(exit_with, code).with_start_method(m);
                    p.start().map_err(|e| e.to_string())?;
                    match p.join() {
                        Ok(c) if c == code => {}
                        other => return Err(format!("child {code} ended with {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    check(shmproc::active_children().is_empty(), "children left running")
}

shmproc_tests::trials! {
    per_method {
        lifecycle,
        exit_codes,
        family_and_names => family,
        reaps_dropped_children,
        large_arguments,
        parent_join_sees_the_parent_end,
    }
    spawned {
        threads_start_children_concurrently,
    }
    once {
        closures_need_fork,
        only_the_parent_joins,
        start_method_is_set_once,
        fork_server_restarts,
        forkserver_pid_names_the_server,
        fork_server_death_is_reported_not_hung,
    }
}
