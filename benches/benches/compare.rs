//! Side-by-side benchmarks of shm against its peers, measured in one run.
//!
//! `cargo bench -p shmproc-benches --bench compare` prints the table and writes
//! `benches/results/latest.md` and `benches/results/*.svg`.
//! `SHM_BENCH_QUICK=1` cuts the iterations about tenfold.
//! `cargo test -p shmproc-benches --benches` (no `--bench` argument) runs a
//! smoke pass with a few iterations and writes nothing.
//! `SHM_BENCH_ONLY=peers,ring` runs only the named groups (`process`,
//! `sync`, `wake`, `ring`, `peers`, `value`, `pool`, `manager`) and writes into
//! `$TMPDIR/shm-bench-partial/`, leaving the committed results alone.
//!
//! Arguments other than `--bench` and `--exit-now` are ignored.

use shmproc_benches::groups::process_start::EXIT_NOW;
use shmproc_benches::groups::{manager, peers, pool, process_start, ring, sync, value, wake};
use shmproc_benches::harness::machine;
use shmproc_benches::harness::report::Report;
use shmproc_benches::{Mode, results_dir};

/// A benchmark group: measures and adds its rows.
type Group = fn(Mode, &mut Report);

fn main() {
    // The spawn floor execs this binary with `--exit-now`: leave before
    // anything else, `shmproc::init()` included.
    if std::env::args_os().nth(1).is_some_and(|a| a == EXIT_NOW) {
        return;
    }
    // Spawned children dispatch to their target here and never return.
    shmproc::init();

    let mode = Mode::detect();
    let mut report = Report::new("shm benchmarks");
    report.header.push(format!("Date: {}", machine::utc_now()));
    report.header.push(format!("Machine: {}", machine::describe()));
    report.header.push(format!(
        "Mode: {}; command: `cargo bench -p shmproc-benches --bench compare`",
        mode.name()
    ));
    report.header.push(
        "Values are medians; ratio = ours/peer; a target `≤ x` is met when ours/peer ≤ x \
         (`≤ 0.1`: at least 10x faster than the peer); for rates (`/s`), `≥ x` when ours/peer ≥ x."
            .to_owned(),
    );

    let only = std::env::var("SHM_BENCH_ONLY").ok().filter(|o| !o.is_empty());
    if let Some(o) = &only {
        report.header.push(format!("Groups: only `{o}` (SHM_BENCH_ONLY)"));
    }
    let groups: [(&str, Group); 8] = [
        ("process", process_start::run),
        ("sync", sync::run),
        ("wake", wake::run),
        ("ring", ring::run),
        ("peers", peers::run),
        ("value", value::run),
        ("pool", pool::run),
        ("manager", manager::run),
    ];
    #[cfg(feature = "mpi")]
    let groups: Vec<(&str, Group)> = groups
        .into_iter()
        .chain([("mpi", shmproc_benches::groups::mpi::run as Group)])
        .collect();
    for (name, run) in groups {
        if only.as_deref().is_none_or(|o| o.split(',').any(|g| g.trim() == name)) {
            run(mode, &mut report);
        }
    }
    report.flag_noisy(3.0);

    print!("{}", report.markdown());
    if mode.writes_results() {
        let dir = if only.is_some() {
            std::env::temp_dir().join("shm-bench-partial")
        } else {
            results_dir()
        };
        match report.write(&dir) {
            Ok(()) => println!("\nwrote {}", dir.join("latest.md").display()),
            Err(e) => {
                eprintln!("could not write results to {}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    }
}
