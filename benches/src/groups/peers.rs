//! The peers of issue 4, each measured against ours in the same run:
//!
//! 1. round trips between 2 processes on 2 CPUs: our `shmproc::spsc` ring
//!    busy-polling against iceoryx2 publish-subscribe busy-polling (and the
//!    cache-line floor), and our blocking `push`/`pop` against a pipe, a
//!    Unix socketpair and ipc-channel, all of which block in the kernel;
//! 2. one-way `u64` streams between the same two processes: ours against
//!    iceoryx2, a pipe and a socketpair (8-byte messages);
//! 3. one-way messages of 8 B to 1 MiB (every byte written and read): our
//!    ring by loan against iceoryx2 by loan, a pipe and a socketpair;
//! 4. the same ring against crossbeam-channel between two threads;
//! 5. `shmproc::Queue` and `shmproc::Pipe` against Python's `multiprocessing`
//!    ([`crate::peers::mp_queue_pipe`]).
//!
//! Cases alternate block by block within each group ([`crate::peers::drive`]);
//! every ratio is within one run. Charts: `peer_latency.svg` (round-trip
//! percentiles) and `peer_sizes.svg` (bytes per second by message size).

use shmproc::park::DEFAULT_SPINS;

use crate::Mode;
use crate::groups::ring::float;
use crate::harness::affinity::allowed_cpus;
use crate::harness::plot::{Kind, LineChart};
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::stats::{Stats, Unit, nearest_rank};
use crate::peers::drive::{FlowCase, Peer, TripCase, Trips, flows, round_trips};
use crate::peers::ends::{
    Bytes, crossbeam_echo, crossbeam_flow, duplex_echo, floor, ipc_echo, loan_flow, ring_echo, ring_flow, stream_echo,
    stream_flow,
};
use crate::peers::hand_ring::CAP;
use crate::peers::ice::{self, ICEORYX2};
use crate::peers::mp_queue_pipe;

const WHERE: &str = "2 processes on 2 CPUs";
const THREADS: &str = "2 threads on 2 CPUs";

/// The round-trip percentiles charted, in permille, and their names.
const PERMILLES: [usize; 4] = [500, 900, 990, 999];
const TAIL_NAMES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

/// Slots of the round-trip rings (as in the ring rows).
const SLOTS: usize = 64;

/// Message sizes of the sweep, in bytes.
const SIZES: [usize; 6] = [8, 64, 512, 4096, 64 << 10, 1 << 20];

/// Slots (and iceoryx2 buffer) of the sweep.
const SIZE_SLOTS: usize = 8;

/// A case's report name, chart label and colour.
struct Named {
    name: String,
    label: &'static str,
    kind: Kind,
}

fn named(name: impl Into<String>, label: &'static str, kind: Kind) -> Named {
    Named {
        name: name.into(),
        label,
        kind,
    }
}

/// p50, p90, p99, p99.9 of the round trips timed one by one.
fn tail(t: &Trips) -> [f64; 4] {
    PERMILLES.map(|pm| nearest_rank(&t.each, pm))
}

fn show_tail(t: [f64; 4]) -> String {
    let v: Vec<String> = t.iter().map(|s| Unit::Seconds.format(*s)).collect();
    v.join(" / ")
}

/// Round trips per block: `full`, or a few in a smoke run.
fn trips(mode: Mode, full: u32) -> u32 {
    if mode == Mode::Smoke { full.min(10) } else { full }
}

/// Messages per block: `full`, or a few hundred in a smoke run.
fn count(mode: Mode, full: u64) -> u64 {
    if mode == Mode::Smoke { full.min(300) } else { full }
}

/// The round-trip cases, in the order `trip_rows` builds them.
fn trip_names() -> [Named; 9] {
    [
        named(
            "cache-line ping-pong (raw), alternating with the peers",
            "cache-line floor",
            Kind::Floor,
        ),
        named(
            "shm duplex u64 round trip, busy-poll, alternating with the peers",
            "shm duplex, busy-poll",
            Kind::Ours,
        ),
        named(
            "shm spsc u64 round trip, busy-poll, alternating with the peers",
            "shm spsc, busy-poll",
            Kind::Ours,
        ),
        named(
            format!("{ICEORYX2} u64 round trip, busy-poll"),
            "iceoryx2, busy-poll",
            Kind::Peer,
        ),
        named(
            format!("shm spsc u64 round trip, push/pop (default spins, {DEFAULT_SPINS}), alternating with the peers"),
            "shm spsc, push/pop",
            Kind::Ours,
        ),
        named(
            format!(
                "shm duplex u64 round trip, send/recv (default spins, {DEFAULT_SPINS}), alternating with the peers"
            ),
            "shm duplex, send/recv",
            Kind::Ours,
        ),
        named("pipe 8 B round trip, blocking read (raw)", "pipe", Kind::Peer),
        named(
            "socketpair(AF_UNIX, SOCK_STREAM) 8 B round trip, blocking read (raw)",
            "socketpair",
            Kind::Peer,
        ),
        named(
            "ipc-channel 0.23 u64 round trip, blocking recv",
            "ipc-channel",
            Kind::Peer,
        ),
    ]
}

/// Round trips between two processes; returns the chart's lines.
fn trip_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) -> Vec<(Named, [f64; 4])> {
    let fast = trips(mode, 1000);
    let slow = trips(mode, 100);
    let ends = (|| -> Result<Vec<TripCase>, String> {
        let (fa, fb) = floor().map_err(|e| e.to_string())?;
        let (da, db) = duplex_echo(SLOTS, false).map_err(|e| e.to_string())?;
        let (oa, ob) = ring_echo(SLOTS, false).map_err(|e| e.to_string())?;
        let (ia, ib) = ice::echo_ends("trip");
        let (ba, bb) = ring_echo(SLOTS, true).map_err(|e| e.to_string())?;
        let (xa, xb) = duplex_echo(SLOTS, true).map_err(|e| e.to_string())?;
        let (pa, pb) = stream_echo(Bytes::Pipe).map_err(|e| e.to_string())?;
        let (sa, sb) = stream_echo(Bytes::Socket).map_err(|e| e.to_string())?;
        let (ca, cb) = ipc_echo().map_err(|e| e.to_string())?;
        Ok(vec![
            (fa, fb, fast),
            (da, db, fast),
            (oa, ob, fast),
            (ia, ib, fast),
            (ba, bb, fast),
            (xa, xb, fast),
            (pa, pb, slow),
            (sa, sb, slow),
            (ca, cb, slow),
        ])
    })();
    let cases = match ends {
        Ok(c) => c,
        Err(e) => {
            report.skipped.push(format!("peer round trips ({e})"));
            return Vec::new();
        }
    };
    let t = round_trips(Peer::Process, cpus, cases, mode.scale(100), mode.warmup(3));
    let names = trip_names();
    let m: Vec<Measured> = (names.iter().zip(&t))
        .map(|(n, t)| report.measure(Measured::new(&n.name, t.mean)))
        .collect();
    let [floor, duplex, rings, ice, blocking, duplex_blocking, pipe, socket, ipc] = &m[..] else {
        unreachable!("nine cases")
    };
    let rows = &mut report.rows;
    rows.push(Row::info(
        format!("cache-line ping-pong round trip, {WHERE}, alternating with the peers (floor)"),
        floor.clone(),
    ));
    let busy = format!("u64 round trip over a duplex channel, busy-poll, {WHERE}");
    rows.push(Row::new(&busy, duplex.clone(), &ice.name, Some(ice.stats)).target(Target::AtMost(0.33)));
    let floor_name = "cache-line ping-pong (raw floor, alternating with the peers)";
    rows.push(Row::new(&busy, duplex.clone(), floor_name, Some(floor.stats)));
    let busy_rings = format!("u64 round trip over two SPSC rings, busy-poll, {WHERE}");
    rows.push(Row::new(&busy_rings, rings.clone(), &ice.name, Some(ice.stats)));
    let blocked = format!("u64 round trip over a duplex channel, blocking receive, {WHERE}");
    let blocked_rings = format!("u64 round trip over two SPSC rings, blocking receive, {WHERE}");
    for peer in [pipe, socket, ipc] {
        rows.push(Row::new(
            &blocked,
            duplex_blocking.clone(),
            &peer.name,
            Some(peer.stats),
        ));
        rows.push(Row::new(&blocked_rings, blocking.clone(), &peer.name, Some(peer.stats)));
    }
    let tails: Vec<String> = (names.iter().zip(&t))
        .map(|(n, t)| format!("{} {}", n.label, show_tail(tail(t))))
        .collect();
    report.notes.push(format!(
        "peer round trips, {WHERE}: blocks of {fast} round trips ({slow} for the pipe, socketpair and ipc-channel) \
         alternate between the cases, each block timed whole (the rows: a sample is its mean) and again with every \
         round trip timed alone (the percentiles; the timer adds a few tens of ns; a block's mean counts its rare slow \
         round trips too, so a row may lie above the p50); iceoryx2 over the floor {:.1}x, \
         our duplex channel {:.1}x, our two rings {:.1}x; percentiles p50 / p90 / p99 / p99.9: {}. A blocking receive on the other CPU sleeps in the \
         kernel and waits for a halted vCPU to wake (MACHINE.md); our push/pop spins first.",
        ice.stats.median / floor.stats.median,
        duplex.stats.median / floor.stats.median,
        rings.stats.median / floor.stats.median,
        tails.join("; ")
    ));
    names.into_iter().zip(&t).map(|(n, t)| (n, tail(t))).collect()
}

/// One-way `u64` streams between two processes.
fn flow_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) {
    let (many, few) = (count(mode, 200_000), count(mode, 20_000));
    let ends = (|| -> Result<Vec<FlowCase>, String> {
        let (of, od) = ring_flow(CAP, false).map_err(|e| e.to_string())?;
        let (i_f, id) = ice::flow_ends("flow", 0, CAP);
        let (pf, pd) = stream_flow(Bytes::Pipe, 1).map_err(|e| e.to_string())?;
        let (sf, sd) = stream_flow(Bytes::Socket, 1).map_err(|e| e.to_string())?;
        Ok(vec![(of, od, many), (i_f, id, few), (pf, pd, few), (sf, sd, few)])
    })();
    let cases = match ends {
        Ok(c) => c,
        Err(e) => {
            report.skipped.push(format!("peer one-way rows ({e})"));
            return;
        }
    };
    let r = flows(Peer::Process, cpus, cases, mode.scale(30), mode.warmup(2));
    let names = [
        "shm spsc u64 one way, try_send/try_recv, alternating with the peers".to_owned(),
        format!("{ICEORYX2} u64 one way, send_copy/receive"),
        "pipe 8 B messages one way, a write and a read each (raw)".to_owned(),
        "socketpair(AF_UNIX, SOCK_STREAM) 8 B messages one way, a write and a read each (raw)".to_owned(),
    ];
    let m: Vec<Measured> = (names.iter().zip(&r))
        .map(|(n, s)| report.measure(Measured::new(n, *s)))
        .collect();
    let bench = format!("u64 one way, {WHERE}");
    for peer in &m[1..] {
        let row = Row::new(&bench, m[0].clone(), &peer.name, Some(peer.stats));
        report.rows.push(row);
    }
    report.notes.push(format!(
        "peer one-way u64, {WHERE}: the child sends, the parent receives, checks and times; blocks of {many} \
         messages (ours) or {few} (the others) alternate, each started when the receiver is ready; our ring and \
         the iceoryx2 subscriber buffer hold {CAP} messages; iceoryx2's publisher retries until delivered \
         (nothing is lost)."
    ));
}

fn size_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Messages per block for `bytes`: about 8 MiB, 16 to 10 000 messages.
fn size_count(mode: Mode, bytes: usize) -> u64 {
    if mode == Mode::Smoke {
        return 4;
    }
    ((8u64 << 20) / bytes as u64).clamp(16, 10_000)
}

/// One-way messages of every size; returns the chart.
fn size_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) -> Option<LineChart> {
    let ends = (|| -> Result<Vec<FlowCase>, String> {
        let ours = [
            loan_flow::<1>(SIZE_SLOTS),
            loan_flow::<8>(SIZE_SLOTS),
            loan_flow::<64>(SIZE_SLOTS),
            loan_flow::<512>(SIZE_SLOTS),
            loan_flow::<8192>(SIZE_SLOTS),
            loan_flow::<131_072>(SIZE_SLOTS),
        ];
        let mut cases = Vec::new();
        for (&bytes, ours) in SIZES.iter().zip(ours) {
            let (words, m) = (bytes / 8, size_count(mode, bytes));
            let (of, od) = ours.map_err(|e| e.to_string())?;
            let (i_f, id) = ice::flow_ends(&format!("size-{bytes}"), words, SIZE_SLOTS);
            let (pf, pd) = stream_flow(Bytes::Pipe, words).map_err(|e| e.to_string())?;
            let (sf, sd) = stream_flow(Bytes::Socket, words).map_err(|e| e.to_string())?;
            cases.extend([(of, od, m), (i_f, id, m), (pf, pd, m), (sf, sd, m)]);
        }
        Ok(cases)
    })();
    let cases = match ends {
        Ok(c) => c,
        Err(e) => {
            report.skipped.push(format!("peer message-size sweep ({e})"));
            return None;
        }
    };
    let r = flows(Peer::Process, cpus, cases, mode.scale(20), mode.warmup(1));
    let who = [
        named("shm spsc, loan (reserve/peek)", "shm spsc, loan", Kind::Ours),
        named(
            format!("{ICEORYX2}, loan_slice_uninit/receive"),
            "iceoryx2, loan",
            Kind::Peer,
        ),
        named("pipe, write_all/read_exact (raw)", "pipe", Kind::Peer),
        named(
            "socketpair(AF_UNIX, SOCK_STREAM), write_all/read_exact (raw)",
            "socketpair",
            Kind::Peer,
        ),
    ];
    let mut bandwidth = vec![Vec::new(); who.len()];
    for (z, &bytes) in SIZES.iter().enumerate() {
        let size = size_name(bytes);
        let m: Vec<Measured> = (who.iter().zip(&r[z * who.len()..]).enumerate())
            .map(|(k, (w, s))| {
                bandwidth[k].push(Some(s.median * float(bytes as u64)));
                report.measure(Measured::new(format!("{size} messages one way, {}", w.name), *s))
            })
            .collect();
        let bench = format!("{size} messages one way, every byte written and read, {WHERE}");
        for peer in &m[1..3] {
            report
                .rows
                .push(Row::new(&bench, m[0].clone(), &peer.name, Some(peer.stats)));
        }
    }
    report.notes.push(format!(
        "peer message-size sweep, {WHERE}: the sender writes every word of each message, the receiver checks \
         every word; our ring and the iceoryx2 subscriber buffer hold {SIZE_SLOTS} messages; blocks of about 8 MiB \
         (16 to 10 000 messages) alternate between sizes and cases; the socketpair rows are in the detail table \
         and `peer_sizes.svg`."
    ));
    let x = SIZES.iter().map(|&b| size_name(b)).collect();
    let mut chart = LineChart::new(
        "peer_sizes.svg",
        "one way, payload bytes per second by message size, 2 processes",
        "message size",
        x,
        Unit::PerSecond,
    )
    .rates_of("B");
    for (w, values) in who.iter().zip(bandwidth) {
        chart = chart.line(w.label, w.kind, values);
    }
    Some(chart)
}

/// Ours against crossbeam-channel between two threads.
fn thread_rows(mode: Mode, cpus: (usize, usize), report: &mut Report) {
    let fast = trips(mode, 1000);
    let rings = (|| -> Result<_, shmproc::SegmentError> {
        Ok((ring_echo(SLOTS, false)?, ring_echo(SLOTS, true)?, ring_flow(CAP, true)?))
    })();
    let ((oa, ob), (ba, bb), (of, od)) = match rings {
        Ok(r) => r,
        Err(e) => {
            report.skipped.push(format!("crossbeam-channel rows ({e})"));
            return;
        }
    };
    let (ca, cb) = crossbeam_echo(SLOTS, false);
    let (ka, kb) = crossbeam_echo(SLOTS, true);
    let cases = vec![(oa, ob, fast), (ca, cb, fast), (ba, bb, fast), (ka, kb, fast)];
    let t = round_trips(Peer::Thread, cpus, cases, mode.scale(100), mode.warmup(3));
    let (cf, cd) = crossbeam_flow(CAP, true);
    let m = count(mode, 200_000);
    let r = flows(
        Peer::Thread,
        cpus,
        vec![(of, od, m), (cf, cd, m)],
        mode.scale(30),
        mode.warmup(2),
    );
    let mut m = |name: String, s: Stats| report.measure(Measured::new(name, s));
    let pairs = [
        (
            format!("u64 round trip, busy-poll, {THREADS}"),
            m(
                format!("shm spsc u64 round trip, try_send/try_recv, {THREADS}"),
                t[0].mean,
            ),
            m(
                format!("crossbeam-channel bounded u64 round trip, try_send/try_recv, {THREADS}"),
                t[1].mean,
            ),
        ),
        (
            format!("u64 round trip, blocking send/receive, {THREADS}"),
            m(format!("shm spsc u64 round trip, push/pop, {THREADS}"), t[2].mean),
            m(
                format!("crossbeam-channel bounded u64 round trip, send/recv, {THREADS}"),
                t[3].mean,
            ),
        ),
        (
            format!("u64 one way, blocking send/receive, {THREADS}"),
            m(format!("shm spsc u64 one way, push/pop, {THREADS}"), r[0]),
            m(
                format!("crossbeam-channel bounded({CAP}) u64 one way, send/recv, {THREADS}"),
                r[1],
            ),
        ),
    ];
    for (bench, ours, peer) in pairs {
        report.rows.push(Row::new(bench, ours, &peer.name, Some(peer.stats)));
    }
    report.notes.push(format!(
        "crossbeam-channel, {THREADS}: the same rings as between processes, in one process; round-trip \
         channels of {SLOTS}, one-way of {CAP}; blocks alternate as between processes."
    ));
}

/// Measures every peer group and adds the rows, notes and two charts.
///
/// # Panics
///
/// If shared memory cannot be mapped, a child fails or a message arrives
/// damaged.
pub fn run(mode: Mode, report: &mut Report) {
    let cpus = match allowed_cpus().as_deref() {
        Ok([a, b, ..]) => (*a, *b),
        Ok(_) => {
            report.skipped.push("peer rows (fewer than 2 CPUs allowed)".to_owned());
            return;
        }
        Err(e) => {
            report.skipped.push(format!("peer rows ({e})"));
            return;
        }
    };
    ice::quiet();
    let lines = trip_rows(mode, cpus, report);
    flow_rows(mode, cpus, report);
    let sizes = size_rows(mode, cpus, report);
    thread_rows(mode, cpus, report);
    let py = mp_queue_pipe::rows(mode, cpus, report, WHERE);
    let x = TAIL_NAMES.iter().map(|&s| s.to_owned()).collect();
    let mut chart = LineChart::new(
        "peer_latency.svg",
        "round-trip latency percentiles, 2 processes on 2 CPUs",
        "percentile (each round trip timed alone)",
        x,
        Unit::Seconds,
    );
    for (n, t) in lines {
        chart = chart.line(n.label, n.kind, t.map(Some).to_vec());
    }
    if let Some(t) = &py.ours_pipe {
        chart = chart.line("shm Pipe", Kind::Ours, tail(t).map(Some).to_vec());
    }
    if let Some(t) = py.pipe_tail {
        chart = chart.line(format!("{} Pipe", py.name), Kind::Peer, t.map(Some).to_vec());
    }
    report.plots.push(chart);
    report.plots.extend(sizes);
}
