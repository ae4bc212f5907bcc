//! The `mpi` feature across real ranks: `mpirun -np 2` and `-np 4` on this
//! host, with the ranks on one node (the queue is shared memory for all,
//! and no operation goes through MPI) and with every rank a node of its
//! own (`SHM_MPI_NODES=per-rank`: every operation of a non-owner goes
//! through MPI). Needs `mpirun` (Open MPI); `.ci/mpi` installs it.
//!
//! Every run is bounded by `timeout` and fails loudly.

use std::process::Command;

use shmproc_tests::check;

type Result = shmproc_tests::TestResult;

/// Runs `program` on `np` ranks of this host (a node per rank with
/// `per_rank_nodes`), bounded by `timeout`.
fn launch(program: &str, np: usize, per_rank_nodes: bool) -> std::result::Result<std::process::Output, String> {
    Command::new("timeout")
        .args([
            "120",
            "mpirun",
            "--allow-run-as-root",
            "--oversubscribe",
            "-x",
            "SHM_MPI_NODES",
            "-np",
        ])
        .arg(np.to_string())
        .arg(program)
        .env("SHM_MPI_NODES", if per_rank_nodes { "per-rank" } else { "" })
        .output()
        .map_err(|e| format!("cannot run mpirun: {e}"))
}

/// Runs `program` as [`launch`] does; what it printed, or why it failed.
fn mpirun_ok(program: &str, np: usize, per_rank_nodes: bool) -> std::result::Result<String, String> {
    let out = launch(program, np, per_rank_nodes)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "mpirun -np {np} failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

/// Runs the `mpi_queue` example on `np` ranks; returns what it printed.
fn mpirun(np: usize, per_rank_nodes: bool) -> std::result::Result<String, String> {
    mpirun_ok(env!("CARGO_BIN_EXE_mpi_queue"), np, per_rank_nodes)
}

/// The `(local ops, MPI ops)` that rank `r` printed.
fn ops(text: &str, r: usize, np: usize) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with(&format!("rank {r} of {np}:")))?;
    let nums: Vec<u64> = line
        .split(", ")
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    match nums[..] {
        [local, remote] => Some((local, remote)),
        _ => None,
    }
}

fn run(np: usize, per_rank_nodes: bool) -> Result {
    let text = mpirun(np, per_rank_nodes)?;
    let total = 1000 * (np - 1);
    check(
        text.contains(&format!("rank 0 took {total} items, each rank's in order")),
        format!("rank 0 did not take every item in order:\n{text}"),
    )?;
    for r in 0..np {
        let (local, remote) = ops(&text, r, np).ok_or_else(|| format!("rank {r} printed no stats:\n{text}"))?;
        if r == 0 || !per_rank_nodes {
            check(
                remote == 0,
                format!("rank {r} sent same-node traffic through MPI:\n{text}"),
            )?;
            check(local > 0, format!("rank {r} did not use the queue:\n{text}"))?;
        } else {
            check(
                local == 0 && remote == 1001,
                format!("rank {r} on another node:\n{text}"),
            )?;
        }
    }
    Ok(())
}

/// Requests outside the protocol (a queue that does not exist, an
/// unknown tag) are refused with a reason, and the job ends normally.
fn bad_requests_are_refused() -> Result {
    let text = mpirun_ok(env!("CARGO_BIN_EXE_mpi_bad"), 2, true)?;
    check(
        text.contains("put after the World: the World was dropped"),
        text.clone(),
    )?;
    check(
        text.contains("get after the World: the communication thread has stopped"),
        text.clone(),
    )?;
    check(text.contains("unknown queue: no such queue on this rank"), text.clone())?;
    check(text.contains("unknown tag: an unknown request tag"), text.clone())?;
    check(
        text.contains("chunk to a queue: not a request a queue takes"),
        text.clone(),
    )?;
    check(text.contains("get from a pool: not a request a pool takes"), text)
}

/// A rank that dies: `mpirun` ends the whole job with an error (MPI's
/// world is static), within the bound, and never hangs the others.
fn a_dead_rank_ends_the_job() -> Result {
    let t = std::time::Instant::now();
    let out = launch(env!("CARGO_BIN_EXE_mpi_die"), 2, false)?;
    let code = out.status.code();
    check(
        code != Some(0) && code != Some(124),
        format!("expected the job to fail, not to succeed or hang: {:?}", out.status),
    )?;
    check(
        String::from_utf8_lossy(&out.stderr).contains("rank 1 aborts now"),
        "rank 1 ran",
    )?;
    eprintln!(
        "the job ended {:?} after its rank 1 died, with {:?}",
        t.elapsed(),
        out.status
    );
    Ok(())
}

/// Two hosts on this machine (`shmproc-mpi/scripts/two-hosts`: network
/// namespaces joined by a veth pair, each rank's daemon in its own with its
/// own hostname, MPI restricted to TCP over the veth, so the cross-node path
/// is really taken; the namespaces are made and removed by the script).
/// Where they cannot be made (no privilege), the test says so and passes.
fn on_two_hosts(program: &str) -> std::result::Result<Option<String>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../shmproc-mpi/scripts/two-hosts");
    let out = Command::new(script)
        .arg(program)
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => Ok(Some(text)),
        Some(77) => {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim());
            Ok(None)
        }
        _ => Err(format!(
            "mpirun across two namespaces failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn queue_on_two_hosts() -> Result {
    let Some(text) = on_two_hosts(env!("CARGO_BIN_EXE_mpi_queue"))? else {
        return Ok(());
    };
    check(
        text.contains("rank 0 took 1000 items, each rank's in order"),
        text.clone(),
    )?;
    check(
        text.contains("rank 1 of 2: node 1 of 2, queue local false"),
        format!("two nodes expected:\n{text}"),
    )?;
    check(
        ops(&text, 1, 2) == Some((0, 1001)),
        format!("rank 1 must go through MPI:\n{text}"),
    )?;
    check(
        ops(&text, 0, 2) == Some((1001, 0)),
        format!("rank 0 uses shared memory:\n{text}"),
    )
}

/// The pool program across the two namespaced hosts: every result, in
/// order, and tasks ran on both hosts (each has its own hostname).
fn pool_on_two_hosts() -> Result {
    let Some(text) = on_two_hosts(env!("CARGO_BIN_EXE_mpi_pool"))? else {
        return Ok(());
    };
    pool_output(&text, 2)?;
    check(
        text.contains("node-shm-a-") && text.contains("node-shm-b-"),
        format!("tasks on both hosts:\n{text}"),
    )
}

fn pool_output(text: &str, nodes: usize) -> Result {
    check(text.contains(&format!("ranks on {nodes} nodes")), text.to_owned())?;
    check(text.contains("doubled: [10, 20, 40]"), text.to_owned())?;
    check(
        text.contains(&format!("{} tasks of 200 ms on {} workers", 4 * nodes, 2 * nodes)),
        text.to_owned(),
    )
}

fn pool_a_node_per_rank() -> Result {
    let text = mpirun_ok(env!("CARGO_BIN_EXE_mpi_pool"), 3, true)?;
    pool_output(&text, 3)
}

/// What every run of `mpi_manager` prints on rank 0: nothing lost.
fn manager_output(text: &str, np: usize) -> Result {
    check(text.contains(&format!("hits {0} of {0}", 100 * np)), text.to_owned())?;
    check(text.contains(&format!("tally {0} of {0}", 10 * np)), text.to_owned())?;
    let ranks: Vec<String> = (0..np).map(|r| r.to_string()).collect();
    check(
        text.contains(&format!("ranks seen [{}]", ranks.join(", "))),
        text.to_owned(),
    )?;
    check(text.contains(&format!("keys {}", np + 1)), text.to_owned())?;
    for r in 0..np {
        check(
            text.contains(&format!("rank {r}: read \"hello from rank 0\"")),
            format!("rank {r} read the namespace:\n{text}"),
        )?;
    }
    Ok(())
}

/// Manager containers and a served object on one node (every rank uses
/// them in shared memory, none through MPI) or on a node per rank (ranks
/// 1 and 2 reach rank 0's objects through MPI, every operation of theirs);
/// either way no increment is lost.
fn manager_run(per_rank_nodes: bool) -> Result {
    let text = mpirun_ok(env!("CARGO_BIN_EXE_mpi_manager"), 3, per_rank_nodes)?;
    manager_output(&text, 3)?;
    for r in 0..3 {
        let local = r == 0 || !per_rank_nodes;
        let (here, there) = if local { (101, 0) } else { (0, 101) };
        check(
            text.contains(&format!(
                "rank {r}: read \"hello from rank 0\"; dict local {local}, list local {local}, proxy local {local}; \
                 dict ops Traffic {{ local: {here}, remote: {there} }}"
            )),
            format!("rank {r}: local {local} expected:\n{text}"),
        )?;
    }
    Ok(())
}

fn manager_on_two_hosts() -> Result {
    let Some(text) = on_two_hosts(env!("CARGO_BIN_EXE_mpi_manager"))? else {
        return Ok(());
    };
    manager_output(&text, 2)?;
    check(
        text.contains("rank 1: read \"hello from rank 0\"; dict local false"),
        format!("rank 1 on the other host goes through MPI:\n{text}"),
    )
}

/// What `mpi_more` prints: the joinable queue joined on both ranks that
/// join, and every pool call right, with only the failing tasks failed.
fn more_output(text: &str, np: usize, hosts: usize) -> Result {
    for want in [
        "rank 0: joined true, queue local true".to_owned(),
        format!("rank {}: joined true", np - 1),
        format!("rank {}: one task_done too many refused true", np - 1),
        "imap endless take(100) in order true".to_owned(),
        "imap_unordered len (1000, Some(1000)) all true".to_owned(),
        "starmap true".to_owned(),
        "big map true".to_owned(),
        format!("rank {}: big value back 100000", np - 1),
        "apply_async 42".to_owned(),
        "map_async [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]".to_owned(),
        format!("hosts {hosts}"),
        "fragile failed [7, 13]".to_owned(),
        "fragile 7: task 7 failed on ".to_owned(),
        "seven is not allowed".to_owned(),
        "fragile 13: task 13 failed on ".to_owned(),
        "its worker died (signal 6 (SIGABRT))".to_owned(),
        "fragile others 18".to_owned(),
    ] {
        check(text.contains(&want), format!("expected {want:?} in:\n{text}"))?;
    }
    Ok(())
}

fn more_run(per_rank_nodes: bool) -> Result {
    more_output(&mpirun_ok(env!("CARGO_BIN_EXE_mpi_more"), 3, per_rank_nodes)?, 3, 1)
}

fn more_on_two_hosts() -> Result {
    let Some(text) = on_two_hosts(env!("CARGO_BIN_EXE_mpi_more"))? else {
        return Ok(());
    };
    more_output(&text, 2, 2)?;
    check(
        text.contains("rank 1: joined true, queue local false"),
        format!("rank 1 joins through MPI:\n{text}"),
    )
}

fn main() {
    let tests = vec![
        libtest_mimic::Trial::test("mpi_queue_np2_one_node", || run(2, false)),
        libtest_mimic::Trial::test("mpi_queue_np4_one_node", || run(4, false)),
        libtest_mimic::Trial::test("mpi_queue_np2_a_node_per_rank", || run(2, true)),
        libtest_mimic::Trial::test("mpi_queue_np4_a_node_per_rank", || run(4, true)),
        libtest_mimic::Trial::test("mpi_queue_two_hosts_in_network_namespaces", queue_on_two_hosts),
        libtest_mimic::Trial::test("mpi_pool_a_node_per_rank", pool_a_node_per_rank),
        libtest_mimic::Trial::test("mpi_pool_two_hosts_in_network_namespaces", pool_on_two_hosts),
        libtest_mimic::Trial::test("mpi_manager_one_node", || manager_run(false)),
        libtest_mimic::Trial::test("mpi_manager_a_node_per_rank", || manager_run(true)),
        libtest_mimic::Trial::test("mpi_manager_two_hosts_in_network_namespaces", manager_on_two_hosts),
        libtest_mimic::Trial::test("mpi_joinable_queue_and_pool_calls_one_node", || more_run(false)),
        libtest_mimic::Trial::test("mpi_joinable_queue_and_pool_calls_a_node_per_rank", || more_run(true)),
        libtest_mimic::Trial::test("mpi_joinable_queue_and_pool_calls_two_hosts", more_on_two_hosts),
        libtest_mimic::Trial::test("mpi_a_dead_rank_ends_the_job", a_dead_rank_ends_the_job),
        libtest_mimic::Trial::test("mpi_bad_requests_are_refused", bad_requests_are_refused),
    ];
    shmproc_tests::run_trials(tests)
}
