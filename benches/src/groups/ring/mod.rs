//! `shmproc::spsc` ring rows, two processes pinned one per CPU:
//!
//! 1. the cache-line ping-pong floor and busy-polling `u64` round trips
//!    over our rings and over hand-tuned ones ([`crate::groups::ring::trips`]);
//! 2. one-way `u64` throughput, one message at a time and in batches,
//!    against the hand-tuned ring ([`crate::groups::ring::flow`]);
//! 3. blocking round trips against the futex floor ([`crate::groups::ring::sleep`]);
//! 4. messages per second of large payloads by loan and by copy
//!    ([`crate::groups::ring::sizes`], chart `ring_sizes.svg`).
//!
//! Compared cases alternate block by block in one run; each floor is also
//! measured alone before and after its group, and a note marks a floor
//! that moved by more than [`FLOOR_MOVE`]. The one-way and payload groups
//! have no floor of their own: a short cache-line ping-pong before and
//! after each shows whether the machine changed mode meanwhile (on this
//! machine it flips between about 30, 60 and 450 ns at random).

pub mod flow;
pub mod sizes;
pub mod sleep;
pub mod trips;

use shmproc::Process;
use shmproc::park::DEFAULT_SPINS;

use crate::Mode;
use crate::groups::wake::FLOOR_MOVE;
use crate::harness::affinity::{allowed_cpus, pin_to};
use crate::harness::plot::{Chart, Kind};
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::stats::{Stats, Unit};
use flow::BATCH;
use sizes::{PATHS, Path, SIZES, SLOTS};
use sleep::SETTINGS;

const WHERE: &str = "2 processes on 2 CPUs";

/// Forks a child pinned to `cpu` that runs `f`, and starts it.
///
/// # Panics
///
/// If the child cannot be started (in the child: if pinning fails).
pub fn fork_pinned(cpu: usize, f: impl FnOnce() + Send + 'static) -> Process {
    let child = Process::from_closure(move || {
        let _pin = pin_to(cpu).expect("pin a ring child");
        f();
    });
    child.start().expect("start a ring child");
    child
}

/// A count as `f64` (counts here are far below 2^32).
///
/// # Panics
///
/// If `n` does not fit 32 bits.
pub fn float(n: u64) -> f64 {
    f64::from(u32::try_from(n).expect("a count below 2^32"))
}

/// "within 30%", or a warning that the floor moved.
fn floor_verdict(stats: &[Stats]) -> String {
    let lo = stats.iter().map(|s| s.median).fold(f64::INFINITY, f64::min);
    let hi = stats.iter().map(|s| s.median).fold(0.0, f64::max);
    let moved = hi / lo - 1.0;
    if moved > FLOOR_MOVE {
        format!(
            "**the floor moved by {:.0}% (> {:.0}%)**: the ratios use the floor that alternated with each case, \
             but rerun to confirm",
            100.0 * moved,
            100.0 * FLOOR_MOVE
        )
    } else {
        format!("within {:.0}%", 100.0 * FLOOR_MOVE)
    }
}

fn trip_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) {
    let t = trips::measure(mode, cpus);
    let mut m = |name: &str, s: Stats| report.measure(Measured::new(name, s));
    m("cache-line ping-pong (raw), alone before the rings", t.before);
    m("cache-line ping-pong (raw), alone after the rings", t.after);
    let floor = m("cache-line ping-pong (raw), alternating with the rings", t.floor);
    let two_lines = m(
        "two-line ping-pong (raw), one word per direction, alternating",
        t.two_lines,
    );
    let duplex = m("shm duplex u64 round trip, busy-poll", t.duplex);
    let ours = m("shm spsc u64 round trip, busy-poll", t.ours);
    let hand = m("hand-tuned SPSC u64 round trip (raw), busy-poll", t.hand);
    let floor_name = "cache-line ping-pong (raw floor, alternating)";
    let rows = &mut report.rows;
    rows.push(Row::info(
        format!("cache-line ping-pong round trip, {WHERE} (floor)"),
        floor,
    ));
    let dup = format!("u64 round trip over a duplex channel, busy-poll, {WHERE}");
    rows.push(Row::new(&dup, duplex, floor_name, Some(t.floor)).target(Target::AtMost(1.3)));
    let bench = format!("u64 round trip over two SPSC rings, busy-poll, {WHERE}");
    rows.push(Row::new(&bench, ours.clone(), floor_name, Some(t.floor)));
    rows.push(Row::new(&bench, ours.clone(), &two_lines.name, Some(t.two_lines)));
    let raw = format!("u64 round trip over two hand-tuned SPSC rings (raw peer), busy-poll, {WHERE}");
    rows.push(Row::new(raw, hand.clone(), floor_name, Some(t.floor)));
    rows.push(Row::new(&bench, ours, &hand.name, Some(t.hand)));
    let show = |s: &Stats| s.show();
    report.notes.push(format!(
        "busy-poll round trips, {WHERE}: rings of {} slots; blocks of {} round trips, a sample is a block's mean; \
         cache-line floor (one word both sides flip) before {}, alternating {}, after {}: {}. With one word per \
         direction, each on a line of its own, the ping-pong takes {} ({:.2}x the floor). Every spin is a \
         `pause` and a look.",
        trips::SLOTS,
        trips::TRIPS,
        show(&t.before),
        show(&t.floor),
        show(&t.after),
        floor_verdict(&[t.before, t.floor, t.after]),
        show(&t.two_lines),
        t.two_lines.median / t.floor.median
    ));
}

/// "cache-line floor before X, after Y: verdict", recording both.
fn probes(report: &mut Report, group: &str, before: Stats, after: Stats) -> String {
    report.measure(Measured::new(
        format!("cache-line ping-pong (raw), before {group}"),
        before,
    ));
    report.measure(Measured::new(
        format!("cache-line ping-pong (raw), after {group}"),
        after,
    ));
    format!(
        "cache-line floor before {}, after {}: {}",
        before.show(),
        after.show(),
        floor_verdict(&[before, after])
    )
}

fn flow_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) {
    let before = trips::floor_probe(mode, cpus);
    let (rates, moved) = flow::measure(mode, cpus);
    let probed = probes(report, "the u64 one-way rows", before, trips::floor_probe(mode, cpus));
    let names = [
        "shm spsc u64 one way, try_send/try_recv".to_owned(),
        "hand-tuned SPSC u64 one way (raw), publish per message".to_owned(),
        format!("shm spsc u64 one way, try_send_slice/try_recv_slice ×{BATCH}"),
        format!("hand-tuned SPSC u64 one way (raw), publish per batch ≤{BATCH}"),
        "shm mpmc u64 one way, try_put/try_get".to_owned(),
    ];
    let m: Vec<Measured> = (names.iter().zip(&rates))
        .map(|(name, s)| report.measure(Measured::new(name, *s)))
        .collect();
    let total = Unit::Count.format(float(moved) / 1e6);
    let one = format!("u64 one way, 1 message per call, {WHERE}, {total}M messages each");
    let batched = format!("u64 one way, batches of {BATCH}, {WHERE}, {total}M messages each");
    for (bench, ours, peer) in [(one, &m[0], &m[1]), (batched, &m[2], &m[3])] {
        let row = Row::new(bench, ours.clone(), &peer.name, Some(peer.stats));
        report.rows.push(row.target(Target::AtLeast(0.8)));
    }
    let mpmc = format!("u64 one way, MPMC ring, 1 producer and 1 consumer, {WHERE}, {total}M messages");
    let row = Row::new(mpmc, m[4].clone(), &m[0].name, Some(m[0].stats));
    report.rows.push(row);
    report.notes.push(format!(
        "u64 one way, {WHERE}: the child produces, the parent consumes and checks the sum; rings of {} u64; \
         blocks of {} messages alternate between the five cases; {probed}.",
        crate::peers::hand_ring::CAP,
        flow::block(mode)
    ));
}

fn sleep_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) {
    let s = sleep::measure(mode, cpus);
    let m = |r: &mut Report, name: String, s: Stats| r.measure(Measured::new(name, s));
    m(
        report,
        "futex ping-pong, 2 CPUs (raw), before the rings".into(),
        s.before,
    );
    m(report, "futex ping-pong, 2 CPUs (raw), after the rings".into(), s.after);
    let mut alternating = Vec::new();
    for ((&spins, floor), ours) in SETTINGS.iter().zip(s.floors).zip(s.ours) {
        m(
            report,
            format!("futex ping-pong, 2 CPUs (raw), alternating with the spins={spins} ring"),
            floor,
        );
        let set = if spins == 0 {
            "spins=0".to_owned()
        } else {
            format!("default spins ({DEFAULT_SPINS})")
        };
        let ours = m(report, format!("shm spsc u64 round trip, push/pop, {set}"), ours);
        let bench = format!("u64 round trip over two SPSC rings, blocking push/pop, {WHERE}, {set}");
        let target = if spins == 0 { Target::AtMost(1.3) } else { Target::None };
        let row = Row::new(
            bench,
            ours,
            "futex wake round trip (raw floor, alternating)",
            Some(floor),
        );
        report.rows.push(row.target(target));
        alternating.push(format!("alternating with spins={spins} {}", floor.show()));
    }
    let mut all = vec![s.before, s.after];
    all.extend(s.floors);
    report.notes.push(format!(
        "blocking ring round trips, {WHERE}: futex floor before {}, {}, after {}: {}; sleeps (voluntary \
         context switches) per round trip: spins=0 parent {} child {}, default spins parent {} child {}. With \
         spins=0 a `pop` that finds the ring empty first checks that its peer lives (it reads /proc/PID/stat, \
         ~10 µs here) and only then sleeps; the answer often comes meanwhile.",
        s.before.show(),
        alternating.join(", "),
        s.after.show(),
        floor_verdict(&all),
        Unit::Count.format(s.sleeps[0]),
        Unit::Count.format(s.child_sleeps[0]),
        Unit::Count.format(s.sleeps[1]),
        Unit::Count.format(s.child_sleeps[1])
    ));
}

fn size_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn path_name(p: Path) -> &'static str {
    match p {
        Path::LoanBare => "loan (reserve/peek), payload untouched",
        Path::LoanTouched => "loan (reserve/peek), every byte written and read",
        Path::Copy => "copy (try_send/try_recv), every byte written and read",
        Path::Memcpy => "memcpy copy through loans, every byte written and read",
    }
}

fn size_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) -> Chart {
    let before = trips::floor_probe(mode, cpus);
    let sweep = sizes::measure(mode, cpus);
    let probed = probes(report, "the payload sweep", before, trips::floor_probe(mode, cpus));
    let mut chart = Chart::new(
        "ring_sizes.svg",
        "spsc messages/s by payload size: loan vs copy (median, p10..p90)",
    );
    let mut bandwidth = Vec::new();
    let mut untouched = Vec::new();
    for (&bytes, stats) in SIZES.iter().zip(&sweep) {
        let size = size_name(bytes);
        let m: Vec<Option<Measured>> = (PATHS.iter().zip(stats))
            .map(|(&p, s)| {
                let name = format!("shm spsc {size} messages, {}", path_name(p));
                s.map(|s| report.measure(Measured::new(name, s)))
            })
            .collect();
        let [Some(bare), Some(loan), copy, Some(memcpy)] = &m[..] else {
            unreachable!("the loan paths run at every size")
        };
        let bench = |what: &str| format!("{size} messages one way, {WHERE}, {what}");
        report
            .rows
            .push(Row::info(bench("loan, payload untouched"), bare.clone()));
        untouched.push(bare.clone());
        let vs = bench("loan vs copy, every byte written and read");
        let by_value = path_name(Path::Copy);
        // The target: loans against the by-value copy path.
        let target = if bytes == 1 << 20 {
            Target::AtLeast(2.0)
        } else {
            Target::None
        };
        let row = match copy {
            Some(c) => Row::new(&vs, loan.clone(), &c.name, Some(c.stats)),
            None => Row::new(&vs, loan.clone(), format!("shm spsc {size} messages, {by_value}"), None),
        };
        report.rows.push(row.target(target));
        let row = Row::new(vs, loan.clone(), &memcpy.name, Some(memcpy.stats));
        report.rows.push(row);
        let gbs = |s: &Option<Measured>| {
            s.as_ref().map_or_else(
                || "-".to_owned(),
                |s| {
                    let rate = s.stats.median * float(u64::try_from(bytes).expect("small"));
                    Unit::PerSecond.format(rate).replace("/s", "B/s")
                },
            )
        };
        bandwidth.push(format!(
            "{size}: loan {}, try_send/try_recv {}, memcpy {}",
            gbs(&m[1]),
            gbs(&m[2]),
            gbs(&m[3])
        ));
        for (&p, s) in PATHS.iter().zip(stats) {
            let kind = if p == Path::LoanTouched || p == Path::LoanBare {
                Kind::Ours
            } else {
                Kind::Peer
            };
            let label = match p {
                Path::LoanBare => "loan, untouched",
                Path::LoanTouched => "loan, write+read",
                Path::Copy => "try_send/try_recv, write+read",
                Path::Memcpy => "memcpy copy, write+read",
            };
            if let Some(s) = s {
                chart = chart.bar(format!("{size}: {label}"), *s, kind);
            }
        }
    }
    if let (Some(small), Some(large)) = (untouched.first(), untouched.last()) {
        // The claim: with payloads untouched, the rate does not
        // depend on the size (1 MiB against 64 B, about 1).
        let bench = format!("loan, payload untouched: 1 MiB messages against 64 B ones, {WHERE}");
        let row = Row::new(bench, large.clone(), &small.name, Some(small.stats));
        report.rows.push(row.target(Target::AtLeast(0.8)));
    }
    report.notes.push(format!(
        "spsc payload sweep, {WHERE}: rings of {SLOTS} slots; the child produces, the parent consumes and checks \
         every sum; the copy path is try_send of a copy of the producer's buffer and try_recv by value (what the \
         API does without loans); the memcpy copy is `*slot = *buf` into a reserved slot and `*buf = *slot` out \
         of a peeked one, the least a copy in and out costs; payload bytes per second with every byte \
         written and read: {}; {probed}.",
        bandwidth.join("; ")
    ));
    chart
}

/// Measures everything and adds the rows, notes and `ring_sizes.svg`.
///
/// # Panics
///
/// If shared memory cannot be mapped or a child fails.
pub fn run(mode: Mode, report: &mut Report) {
    let cpus = match allowed_cpus().as_deref() {
        Ok([a, b, ..]) => (*a, *b),
        Ok(_) => {
            report
                .skipped
                .push("spsc ring rows (fewer than 2 CPUs allowed)".to_owned());
            return;
        }
        Err(e) => {
            report.skipped.push(format!("spsc ring rows ({e})"));
            return;
        }
    };
    trip_rows(mode, cpus, report);
    flow_rows(mode, cpus, report);
    sleep_rows(mode, cpus, report);
    let chart = size_rows(mode, cpus, report);
    report.charts.push(chart);
}
