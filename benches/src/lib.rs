//! The benchmark harness of shm: every group measures our code and its
//! peers in the same run and reports "ours against the peer" rows.
//!
//! The crate is laid out by role:
//!
//! - [`harness`]: what every group uses: timing and statistics
//!   ([`harness::stats`]), the report and its Markdown table
//!   ([`harness::report`]), the plots ([`harness::plot`], drawn with plotters), the run's description ([`harness::machine`]), CPU pinning
//!   ([`harness::affinity`]), memory shared with forked children
//!   ([`harness::shared_map`]), processes contending at once
//!   ([`harness::contend`]) and the Python runner ([`harness::python`]);
//! - [`groups`]: one module per benchmark group, each with a
//!   `run(Mode, &mut Report)`;
//! - [`peers`]: what ours is measured against, written here or driven from
//!   here: raw OS synchronisation, the hand-tuned ring, iceoryx2, pipes,
//!   sockets and ipc-channel, Python's `multiprocessing`.
//!
//! `cargo bench -p shmproc-benches --bench compare` runs every group, prints
//! the table and writes `benches/results/latest.md` and
//! `benches/results/*.svg`; `benches/README.md` says more.
//!
//! To add a group:
//!
//! 1. write `src/groups/<name>.rs` with a `pub fn run(mode: Mode, report:
//!    &mut Report)` that measures ours and its peers in the same run (peers
//!    of its own go in `src/peers/`), pushes [`harness::report::Row`]s, and
//!    optionally a [`harness::plot::Chart`] or [`harness::plot::LineChart`]
//!    to `report.charts` / `report.plots`;
//! 2. declare it in `src/groups/mod.rs`;
//! 3. add `("<name>", groups::<name>::run)` to the list in
//!    `benches/compare.rs`, so that `SHM_BENCH_ONLY=<name>` selects it.

pub mod groups;
pub mod harness;
pub mod peers;

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

    /// Interleaved rounds per group (see [`harness::stats::time_interleaved`]).
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
