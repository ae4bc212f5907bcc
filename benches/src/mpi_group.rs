//! The `mpi` group (with the `mpi` feature): `src/bin/mpi_bench.rs` run by
//! `mpirun -np 2` with a node per rank (`SHM_MPI_NODES=per-rank`: every
//! queue operation of the non-owner and every remote chunk goes through
//! MPI, over Open MPI's shared-memory transport on this one host):
//!
//! - a `DistQueue` round trip against a raw MPI ping-pong of 8 bytes on
//!   the `mpi` crate (target: within 1.2x);
//! - trivial tasks through a `DistPool` against an MPI master/worker loop
//!   on the `mpi` crate (target: at least 1x).

use std::path::Path;
use std::process::Command;

use crate::Mode;
use crate::python::FlatJson;
use crate::report::{Measured, Report, Row, Target};
use crate::stats::{Stats, Unit};

/// Runs the group.
pub fn run(mode: Mode, report: &mut Report) {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/mpi_bench");
    if !bin.exists() {
        report.skipped.push(
            "mpi rows (build `cargo build --release -p shm-benches --features mpi --bin mpi_bench` first)".into(),
        );
        return;
    }
    let n = mode.scale(5000).max(100);
    let out = Command::new("timeout")
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
        .arg(&bin)
        .arg(n.to_string())
        .env("SHM_MPI_NODES", "per-rank")
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            report.skipped.push(format!("mpi rows (mpirun failed: {})", o.status));
            return;
        }
        Err(e) => {
            report.skipped.push(format!("mpi rows (no mpirun: {e})"));
            return;
        }
    };
    let Some(j) = text.lines().rev().find_map(|l| FlatJson::parse(l).ok()) else {
        report.skipped.push("mpi rows (no result line)".into());
        return;
    };
    let single = |k: &str, unit| j.number(k).map(|v| Stats::single(v, unit));
    if let (Some(q), Some(raw)) = (single("queue", Unit::Seconds), single("raw", Unit::Seconds)) {
        let ours = report.measure(Measured::new("shm DistQueue round trip, a node per rank (p50)", q));
        report.rows.push(
            Row::new(
                "queue round trip across nodes (2 ranks, one host)",
                ours,
                "raw MPI 8 B ping-pong (mpi crate)",
                Some(raw),
            )
            .target(Target::AtMost(1.2)),
        );
    }
    if let (Some(p), Some(m)) = (single("pool", Unit::PerSecond), single("master", Unit::PerSecond)) {
        let ours = report.measure(Measured::new("shm DistPool map(x+1), 2 nodes x 2 workers", p));
        report.rows.push(
            Row::new(
                "pool trivial tasks across nodes (2 ranks, one host)",
                ours,
                "MPI master/worker loop (mpi crate)",
                Some(m),
            )
            .target(Target::AtLeast(1.0)),
        );
    }
}
