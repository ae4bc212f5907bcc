//! Shared helpers of the benchmark harness: timing ([`stats`]), the report
//! and its Markdown table ([`report`]), SVG bar charts ([`svg`]), Python
//! peers ([`python`]), the run's description ([`machine`]), raw OS peers
//! ([`raw_sync`]), CPU pinning ([`affinity`]), two-process contention
//! ([`contend`]), two-process Event/Condition hand-offs ([`wake_pairs`]),
//! the hand-tuned SPSC ring peer ([`hand_ring`]), and the benchmark groups
//! themselves ([`process_start`], [`sync_bench`], [`ping_pong`],
//! [`wake_bench`], [`ring_bench`] with [`ring_trips`], [`ring_flow`],
//! [`ring_sleep`], [`ring_sizes`]; [`peers`] with [`peer_ends`],
//! [`peer_ice`], [`peer_drive`], [`peer_python`]; [`value_bench`]).
//!
//! `cargo bench -p shmproc-benches --bench compare` runs every group, prints the
//! table and writes `benches/results/latest.md` and `benches/results/*.svg`.
//! To add a group: a module with a `run(mode, &mut Report)` that measures
//! ours and its peers in the same run, pushes [`report::Row`]s, and
//! optionally a [`svg::Chart`]; then call it from `benches/compare.rs`.

pub mod affinity;
pub mod contend;
pub mod hand_ring;
pub mod machine;
pub mod manager_bench;
#[cfg(feature = "mpi")]
pub mod mpi_group;
pub mod peer_drive;
pub mod peer_ends;
pub mod peer_ice;
pub mod peer_python;
pub mod peers;
pub mod ping_pong;
pub mod pool_bench;
pub mod process_start;
pub mod python;
pub mod raw_sync;
pub mod report;
pub mod ring_bench;
pub mod ring_flow;
pub mod ring_sizes;
pub mod ring_sleep;
pub mod ring_trips;
pub mod stats;
pub mod svg;
pub mod sync_bench;
pub mod value_bench;
pub mod wake_bench;
pub mod wake_pairs;

use std::path::{Path, PathBuf};

/// How much to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench`: full counts, results written.
    Full,
    /// `cargo bench` with `SHM_BENCH_QUICK=1`: about a tenth of the counts,
    /// results written.
    Quick,
    /// `cargo test --benches` (no `--bench` argument): a handful of
    /// iterations to check that everything runs; nothing written.
    Smoke,
}

impl Mode {
    /// Picks the mode from the arguments (`--bench` marks `cargo bench`)
    /// and `SHM_BENCH_QUICK`.
    pub fn detect() -> Self {
        if !std::env::args_os().skip(1).any(|a| a == "--bench") {
            Self::Smoke
        } else if std::env::var_os("SHM_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0") {
            Self::Quick
        } else {
            Self::Full
        }
    }

    /// The number of timed iterations for a full count of `n`.
    pub fn scale(self, n: usize) -> usize {
        match self {
            Self::Full => n,
            Self::Quick => (n / 10).max(2),
            Self::Smoke => n.min(3),
        }
    }

    /// The number of warm-up iterations for a full count of `n`.
    pub fn warmup(self, n: usize) -> usize {
        match self {
            Self::Full => n,
            Self::Quick => (n / 5).max(1),
            Self::Smoke => n.min(1),
        }
    }

    /// Interleaved rounds per group (see [`stats::time_interleaved`]).
    pub fn rounds(self) -> usize {
        match self {
            Self::Full => 20,
            Self::Quick => 4,
            Self::Smoke => 1,
        }
    }

    /// Whether results files are written.
    pub fn writes_results(self) -> bool {
        self != Self::Smoke
    }

    /// A word for the header.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Quick => "quick (SHM_BENCH_QUICK=1, ~1/10 of the iterations)",
            Self::Smoke => "smoke (no --bench: a few iterations, nothing written)",
        }
    }
}

/// Where results are written: `benches/results/`.
pub fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}
