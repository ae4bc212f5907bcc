//! The `mpi` group (with the `mpi` feature): `src/bin/mpi_bench.rs` run by
//! `mpirun -np 2`:
//!
//! - across two hosts made on this machine (`shmproc-mpi/scripts/two-hosts`:
//!   two network namespaces on a veth pair, MPI over TCP only; where they
//!   cannot be made, a node per rank on this host over Open MPI's shared
//!   memory transport, and the rows say so):
//!   - a `DistQueue` round trip against a raw MPI ping-pong of 8 bytes on
//!     the `mpi` crate (target: within 1.2x);
//!   - trivial tasks through a `DistPool` against an MPI master/worker loop
//!     on the `mpi` crate (target: at least 1x);
//! - on one node: a `DistQueue` round trip (shared memory, the feature on)
//!   against the same round trip through plain `Queue`s (the same-node
//!   path must not regress: target within 1.1x).

use std::path::Path;
use std::process::{Command, Output};

use crate::Mode;
use crate::harness::python::FlatJson;
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::stats::{Stats, Unit};

/// The flat JSON line a run printed, or why there is none.
fn result(out: std::io::Result<Output>) -> Result<FlatJson, String> {
    let o = out.map_err(|e| format!("cannot run: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
        ));
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .rev()
        .find_map(|l| FlatJson::parse(l).ok())
        .ok_or_else(|| "no result line".to_owned())
}

/// `mpirun -np 2` of `bin` on this host (a node per rank or one node).
fn on_this_host(bin: &Path, n: usize, per_rank: bool) -> std::io::Result<Output> {
    Command::new("timeout")
        .args([
            "300",
            "mpirun",
            "--allow-run-as-root",
            "--oversubscribe",
            "-x",
            "SHM_MPI_NODES",
            "-np",
            "2",
        ])
        .arg(bin)
        .arg(n.to_string())
        .env("SHM_MPI_NODES", if per_rank { "per-rank" } else { "" })
        .output()
}

/// Runs the group.
pub fn run(mode: Mode, report: &mut Report) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = root.join("target/release/mpi_bench");
    if !bin.exists() {
        report.skipped.push(
            "mpi rows (build `cargo build --release -p shmproc-benches --features mpi --bin mpi_bench` first)".into(),
        );
        return;
    }
    let n = mode.scale(4000).max(200);
    let hosts = Command::new(root.join("shmproc-mpi/scripts/two-hosts"))
        .arg(&bin)
        .arg(n.to_string())
        .output();
    let (where_, j) = match hosts {
        Ok(o) if o.status.code() == Some(77) => {
            report.skipped.push(format!(
                "mpi rows across two hosts ({}); measured with a node per rank on this host instead",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            ("2 ranks, a node each, one host", result(on_this_host(&bin, n, true)))
        }
        other => ("2 hosts: network namespaces, TCP", result(other)),
    };
    match j {
        Ok(j) => across(report, where_, &j),
        Err(why) => report.skipped.push(format!("mpi rows across nodes ({why})")),
    }
    match result(on_this_host(&bin, n, false)) {
        Ok(j) => same_node(report, &j),
        Err(why) => report.skipped.push(format!("mpi same-node row ({why})")),
    }
}

fn single(j: &FlatJson, k: &str, unit: Unit) -> Option<Stats> {
    j.number(k).map(|v| Stats::single(v, unit))
}

fn across(report: &mut Report, where_: &str, j: &FlatJson) {
    if let (Some(q), Some(raw)) = (single(j, "queue", Unit::Seconds), single(j, "raw", Unit::Seconds)) {
        let ours = report.measure(Measured::new("shm DistQueue round trip across nodes (p50)", q));
        report.rows.push(
            Row::new(
                format!("queue round trip across nodes ({where_})"),
                ours,
                "raw MPI 8 B ping-pong (mpi crate)",
                Some(raw),
            )
            .target(Target::AtMost(1.2)),
        );
    }
    if let (Some(p), Some(m)) = (single(j, "pool", Unit::PerSecond), single(j, "master", Unit::PerSecond)) {
        let ours = report.measure(Measured::new("shm DistPool map(x+1), 2 nodes x 2 workers", p));
        report.rows.push(
            Row::new(
                format!("pool trivial tasks across nodes ({where_})"),
                ours,
                "MPI master/worker loop (mpi crate)",
                Some(m),
            )
            .target(Target::AtLeast(1.0)),
        );
    }
}

fn same_node(report: &mut Report, j: &FlatJson) {
    if let (Some(d), Some(p)) = (single(j, "dist", Unit::Seconds), single(j, "plain", Unit::Seconds)) {
        let ours = report.measure(Measured::new("shm DistQueue round trip, 2 ranks on one node (p50)", d));
        report.rows.push(
            Row::new(
                "queue round trip on one node, mpi feature on",
                ours,
                "shm Queue round trip (no MPI)",
                Some(p),
            )
            .target(Target::AtMost(1.1)),
        );
    }
}
