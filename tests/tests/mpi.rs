//! The `mpi` feature across real ranks: `mpirun -np 2` and `-np 4` on this
//! host, with the ranks on one node (the queue is shared memory for all,
//! and no operation goes through MPI) and with every rank a node of its
//! own (`SHM_MPI_NODES=per-rank`: every operation of a non-owner goes
//! through MPI). Needs `mpirun` (Open MPI); `.ci/mpi` installs it.
//!
//! Every run is bounded by `timeout` and fails loudly.

use std::process::Command;

use shm_tests::check;

type Result = shm_tests::TestResult;

/// Runs the `mpi_queue` example on `np` ranks; returns what it printed.
fn mpirun(np: usize, per_rank_nodes: bool) -> std::result::Result<String, String> {
    let out = Command::new("timeout")
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
        .arg(env!("CARGO_BIN_EXE_mpi_queue"))
        .env("SHM_MPI_NODES", if per_rank_nodes { "per-rank" } else { "" })
        .output()
        .map_err(|e| format!("cannot run mpirun: {e}"))?;
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

fn main() {
    let tests = vec![
        libtest_mimic::Trial::test("mpi_queue_np2_one_node", || run(2, false)),
        libtest_mimic::Trial::test("mpi_queue_np4_one_node", || run(4, false)),
        libtest_mimic::Trial::test("mpi_queue_np2_a_node_per_rank", || run(2, true)),
        libtest_mimic::Trial::test("mpi_queue_np4_a_node_per_rank", || run(4, true)),
    ];
    shm_tests::run_trials(tests)
}
