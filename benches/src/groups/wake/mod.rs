//! Event and Condition round trips between two processes
//! ([`crate::groups::wake::pairs`]), against the futex sleep/wake floor of
//! [`crate::groups::ping_pong`] measured in the same run.
//!
//! Four cases: {Event, Condition} × {spins=0, default spins}
//! ([`shmproc_sync::park::set_spins`], set in the parent before each call and
//! in each child once). With spins=0 a wait that finds nothing sleeps at
//! once, so the round trip is compared with the floor (target ≤ 1.3);
//! with the default spins the ratio to the floor shows what spinning buys.
//!
//! - Pinned, like the floor's main row: the parent on one CPU, every child
//!   on the other. The floor alternates with the cases and is also measured
//!   alone before and after them; a note marks a floor that moved by more
//!   than [`FLOOR_MOVE`].
//! - Unpinned: the same, reported without a target.
//! - All children run at once. The cases of one spin setting alternate
//!   with the floor in blocks of n / rounds round trips
//!   ([`time_interleaved`]), one setting after the other, so that each
//!   ratio's floor ran in the same stretch of time as its case (the floor
//!   alone drifts by 30-50% between runs seconds apart on this machine).
//!   The first round trip of a block wakes a child that slept meanwhile;
//!   the median ignores it.
//! - After each set, per case, a run of round trips between two
//!   `getrusage` calls on each side counts the voluntary context switches:
//!   the sleeps. Zero per round trip means the spin path held. The run's
//!   mean round trip counts the round trips that slept at their full cost,
//!   which medians hide.

pub mod pairs;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use shmproc::Process;
use shmproc_sync::park::{self, DEFAULT_SPINS};

use crate::Mode;
use crate::groups::ping_pong::{self, PingPong};
use crate::harness::affinity::{allowed_cpus, pin_to};
use crate::harness::plot::{Chart, Kind};
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::shared_map::{AtomicU64, SharedMap};
use crate::harness::stats::{Case, Stats, Unit, time_interleaved};
use pairs::{Pair, Serve, spin_window, start_child, voluntary_switches};

/// The cases of a group.
const CASES: usize = 4;

/// How far (max/min − 1) the floor may move during a comparison before a
/// note marks the result.
pub const FLOOR_MOVE: f64 = 0.3;

/// Fresh pairs with their spin settings, in report order.
fn cases() -> [(Pair, u32); CASES] {
    let e = || Pair::events().expect("create two Events");
    let c = || Pair::condition().expect("create a Condition and a RawValue");
    [(e(), 0), (e(), DEFAULT_SPINS), (c(), 0), (c(), DEFAULT_SPINS)]
}

fn setting(spins: u32) -> String {
    if spins == 0 {
        "spins=0 (always sleeps)".to_owned()
    } else if spins == DEFAULT_SPINS {
        format!("default spins ({spins})")
    } else {
        format!("{spins} spins")
    }
}

/// What one group measured.
#[derive(Debug)]
struct Group {
    /// The futex floor of each interleaved set, by the set's spin setting.
    floors: Vec<(u32, Stats)>,
    /// The floor each case alternated with.
    floor_of: Vec<Stats>,
    /// Seconds per round trip, per case.
    trips: Vec<Stats>,
    /// Round trips in each counted run.
    runs: u32,
    /// The counted run of each case.
    counted: Vec<Counted>,
}

/// A run of round trips at full rate between two `getrusage` calls.
#[derive(Clone, Copy, Debug)]
struct Counted {
    /// Voluntary context switches (sleeps) per round trip, parent side.
    parent: f64,
    /// The same, child side.
    child: f64,
    /// Seconds per round trip over the whole run (the mean, which counts
    /// the round trips that fell asleep at their full cost).
    mean: f64,
}

fn per_trip(switches: u64, trips: u32) -> f64 {
    f64::from(u32::try_from(switches).unwrap_or(u32::MAX)) / f64::from(trips)
}

/// Round trips `first..first + count` at full rate with `spins`: the
/// parent's voluntary context switches per round trip and the mean
/// round trip (round trip `first` only syncs the child's count).
fn counted_run(pair: &Pair, spins: u32, first: u32, count: u32) -> (f64, f64) {
    park::set_spins(spins);
    pair.round_trip(first);
    let (before, t) = (voluntary_switches(), Instant::now());
    for i in first + 1..=first + count {
        pair.round_trip(i);
    }
    let mean = t.elapsed().as_secs_f64() / f64::from(count);
    (per_trip(voluntary_switches() - before, count), mean)
}

/// Measures the floor and every case, parent on `cpus.0` and children on
/// `cpus.1`, or unpinned.
///
/// # Panics
///
/// If a mapping, a child or the pinning fails.
fn group(mode: Mode, cases: &[(Pair, u32); CASES], cpus: Option<(usize, usize)>) -> Group {
    let (n, w) = (mode.scale(2000), mode.warmup(100));
    let timed = u32::try_from(n + w).expect("a few thousand turns");
    let count = u32::try_from(mode.scale(2000)).expect("a few thousand turns");
    let board = Arc::new(SharedMap::<[AtomicU64; CASES]>::new().expect("map the switch counters"));
    let floor = Arc::new(SharedMap::<PingPong>::new().expect("map the ping-pong words"));
    let pin = cpus.map(|(p, _)| pin_to(p).expect("pin the parent"));
    let cpu = cpus.map(|(_, c)| c);
    // One interleaved set per spin setting, each with the floor: a block
    // of spinning round trips must not sit between the sleeping ones.
    let mut settings: Vec<u32> = cases.iter().map(|c| c.1).collect();
    settings.sort_unstable();
    settings.dedup();
    let floor_turns = timed * u32::try_from(settings.len()).expect("two settings");
    let floor_child = {
        let floor = Arc::clone(&floor);
        Process::from_closure(move || {
            let _pin = cpu.map(|c| pin_to(c).expect("pin the floor child"));
            floor.serve(floor_turns);
        })
    };
    floor_child.start().expect("start the floor child");
    let how = |spins| Serve {
        spins,
        cpu,
        turns: timed + 1 + count,
        count_from: timed + 1,
    };
    let mut kids: Vec<Process> = (cases.iter().enumerate())
        .map(|(k, (pair, spins))| start_child(pair, how(*spins), &board, k))
        .collect();
    kids.push(floor_child);
    let old = park::spins();

    let mut floor_of = vec![None; CASES];
    let mut trips = vec![None; CASES];
    let mut floors = Vec::new();
    let mut parent = vec![None; CASES];
    let mut turn = 0;
    for &spins in &settings {
        let turn = &mut turn;
        let floor = &*floor;
        let mut list = vec![Case::timed(n, w, move || {
            *turn += 1;
            let t = Instant::now();
            floor.round_trip(*turn);
            t.elapsed()
        })];
        let members: Vec<usize> = (0..CASES).filter(|&k| cases[k].1 == spins).collect();
        for &k in &members {
            let (pair, mut i) = (&cases[k].0, 0);
            list.push(Case::timed(n, w, move || {
                i += 1;
                park::set_spins(spins);
                let t = Instant::now();
                pair.round_trip(i);
                t.elapsed()
            }));
        }
        let mut stats = time_interleaved(mode.rounds(), &mut list).into_iter();
        let f = stats.next().expect("the floor's stats");
        for (&k, st) in members.iter().zip(stats) {
            (floor_of[k], trips[k]) = (Some(f), Some(st));
        }
        floors.push((spins, f));
        drop(list);
        // Counted right after the set's timing, in the same stretch of time.
        for &k in &members {
            parent[k] = Some(counted_run(&cases[k].0, spins, timed + 1, count));
        }
    }
    park::set_spins(old);
    for k in &kids {
        assert_eq!(k.join().expect("join a wake child"), 0, "a wake child failed");
    }
    drop(pin);
    // Relaxed: the children have exited and been reaped.
    let child = board.iter().map(|c| per_trip(c.load(Relaxed), count));
    let all = "every case is in a set";
    Group {
        floors,
        floor_of: floor_of.into_iter().map(|f| f.expect(all)).collect(),
        trips: trips.into_iter().map(|t| t.expect(all)).collect(),
        runs: count,
        counted: (parent.into_iter().zip(child))
            .map(|(p, child)| {
                let (parent, mean) = p.expect(all);
                Counted { parent, child, mean }
            })
            .collect(),
    }
}

/// Adds the round-trip rows of one group and its bars, set by set.
fn group_rows(where_: &str, cases: &[(Pair, u32); CASES], g: &Group, report: &mut Report, mut chart: Chart) -> Chart {
    let pinned = where_ == "2 CPUs";
    for &(set_spins, floor) in &g.floors {
        report.measure(Measured::new(
            format!("futex ping-pong, {where_} (raw), alternating with the spins={set_spins} cases"),
            floor,
        ));
        chart = chart.bar(format!("{where_}: futex floor (raw)"), floor, Kind::Floor);
        let members = cases.iter().zip(&g.trips).filter(|((_, spins), _)| *spins == set_spins);
        for ((pair, spins), s) in members {
            let (name, set) = (pair.name(), setting(*spins));
            let m = report.measure(Measured::new(format!("shm {name} ping-pong, {set}, {where_}"), *s));
            let target = if *spins == 0 && pinned {
                Target::AtMost(1.3)
            } else {
                Target::None
            };
            let bench = format!("{name} round trip, 2 processes, {where_}, {set}");
            let row = Row::new(bench, m, "futex wake round trip (raw floor, alternating)", Some(floor));
            report.rows.push(row.target(target));
            chart = chart.bar(format!("{where_}: {name}, spins={spins}"), *s, Kind::Ours);
        }
    }
    chart
}

/// A note on the speed-up spins buy, on how many waits never slept and on
/// the mean of a run at full rate; and (if `rows`) rows of the child's
/// sleeps per round trip, with the counts and means in the detail table.
fn switch_rows(where_: &str, cases: &[(Pair, u32); CASES], g: &Group, report: &mut Report, rows: bool) {
    let mut note = format!(
        "Event/Condition round trips, {where_}, runs of {} at full rate:",
        g.runs
    );
    for (k, ((pair, spins), c)) in cases.iter().zip(&g.counted).enumerate() {
        let (name, set) = (pair.name(), setting(*spins));
        let label = format!("{name}, {set}, {where_}");
        let count = |side: &str, v: f64| {
            Measured::new(
                format!("{label}: voluntary context switches per round trip, {side}"),
                Stats::single(v, Unit::Count),
            )
        };
        let mean = Stats::single(c.mean, Unit::Seconds);
        if rows {
            report.measure(count("parent", c.parent));
            let m = report.measure(count("child", c.child));
            report.measure(Measured::new(format!("{label}: mean round trip of a run"), mean));
            let bench = format!(
                "{name} round trip, {where_}, {set}: sleeps (voluntary context switches) per round trip, child"
            );
            report.rows.push(Row::info(bench, m));
        }
        let slept = f64::midpoint(c.parent, c.child).min(1.0);
        let _ = write!(
            note,
            " {name} {set}: {:.1}% of waits never slept (sleeps per round trip: parent {}, child {}), mean {}",
            100.0 * (1.0 - slept),
            Unit::Count.format(c.parent),
            Unit::Count.format(c.child),
            mean.show()
        );
        let asleep = cases.iter().position(|(p, s)| *s == 0 && p.name() == name);
        if let (true, Some(z)) = (*spins != 0, asleep) {
            let (slow, fast) = (g.trips[z].median, g.trips[k].median);
            let _ = write!(
                note,
                ", speed-up from spinning (medians) {:.1}x over spins=0, {:.1}x over the floor",
                slow / fast,
                g.floor_of[k].median / fast
            );
        }
        note.push(';');
    }
    note.pop();
    report.notes.push(format!("{note}."));
}

/// The pinned group, with the floor alone before and after it.
fn pinned(mode: Mode, cpus: (usize, usize), report: &mut Report, chart: Chart) -> Chart {
    let cases = cases();
    let before = ping_pong::measure(mode, Some(cpus));
    let g = group(mode, &cases, Some(cpus));
    let after = ping_pong::measure(mode, Some(cpus));
    let where_ = "2 CPUs";
    let meds: Vec<f64> = [before, after]
        .iter()
        .chain(g.floors.iter().map(|(_, f)| f))
        .map(|s| s.median)
        .collect();
    let lo = meds.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = meds.iter().copied().fold(0.0, f64::max);
    let show = |s: &Stats| s.show();
    let moved = hi / lo - 1.0;
    let verdict = if moved > FLOOR_MOVE {
        format!(
            "**the floor moved by {:.0}% (> {:.0}%)**: the ratios use the floor that alternated with each case, \
             but rerun to confirm",
            100.0 * moved,
            100.0 * FLOOR_MOVE
        )
    } else {
        format!("within {:.0}%", 100.0 * FLOOR_MOVE)
    };
    let alternating: Vec<String> = (g.floors.iter())
        .map(|(spins, f)| format!("alternating with the spins={spins} cases {}", show(f)))
        .collect();
    report.notes.push(format!(
        "Event/Condition round trips, {where_}: futex floor before {}, {}, after {}: {verdict}.",
        show(&before),
        alternating.join(", "),
        show(&after)
    ));
    report.measure(Measured::new(
        "futex ping-pong, 2 CPUs (raw), before Event/Condition",
        before,
    ));
    report.measure(Measured::new(
        "futex ping-pong, 2 CPUs (raw), after Event/Condition",
        after,
    ));
    let chart = group_rows(where_, &cases, &g, report, chart);
    switch_rows(where_, &cases, &g, report, true);
    chart
}

/// Measures everything and adds the rows, notes and `wake.svg` to `report`.
///
/// # Panics
///
/// If shared memory cannot be mapped or a child fails.
pub fn run(mode: Mode, report: &mut Report) {
    let chart = Chart::new(
        "wake.svg",
        "Event/Condition round trip vs futex floor (median, p10..p90)",
    );
    let chart = match allowed_cpus().as_deref() {
        Ok([a, b, ..]) => pinned(mode, (*a, *b), report, chart),
        Ok(_) => {
            let skipped = "pinned Event/Condition round trips (fewer than 2 CPUs allowed)";
            report.skipped.push(skipped.to_owned());
            chart
        }
        Err(e) => {
            report.skipped.push(format!("pinned Event/Condition round trips ({e})"));
            chart
        }
    };
    report.notes.push(format!(
        "Event/Condition with default spins: {DEFAULT_SPINS} spins last {} here. Their round trips are \
         bimodal: both sides stay on the spin path, or, once one side has slept, the other's spin runs out \
         during the futex wake and both keep sleeping until a wake-up happens to come fast; their p90 is a \
         floor-sized wake (a `noisy` flag on them is expected) and the mean of a run shows the cost at full rate.",
        Unit::Seconds.format(spin_window(DEFAULT_SPINS))
    ));
    let cases = cases();
    let g = group(mode, &cases, None);
    let chart = group_rows("unpinned", &cases, &g, report, chart);
    switch_rows("unpinned", &cases, &g, report, false);
    report.notes.push(
        "Event/Condition round trips, unpinned: the scheduler decides, per child and per run, whether the two \
         processes share a CPU (a wake costs a few µs) or not (a halted vCPU, tens of µs), and a waker that \
         spins instead of sleeping at once keeps its CPU busy; these rows vary severalfold between runs and \
         have no target."
            .to_owned(),
    );
    report.charts.push(chart);
}
