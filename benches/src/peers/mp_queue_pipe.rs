//! `shmproc::Queue` and `shmproc::Pipe` against their Python originals,
//! `multiprocessing.Queue` (small ints one way, items per second) and
//! `multiprocessing.Pipe` (8-byte round trips), measured by
//! `python/mp_queue_pipe.py` with the same shape: one producer process and
//! one consumer, or an echoing child, pinned one per CPU.
//!
//! Our side is [`ours_queue`] and [`ours_pipe`], run by the drivers of
//! [`crate::peers::drive`] like the other peers: the child produces (or
//! echoes) and this process receives (or asks), checks and times.

use shmproc::{Connection, Pipe, Queue};

use crate::Mode;
use crate::harness::python;
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::stats::{Stats, Unit};
use crate::peers::drive::{Peer, Trips, flows, round_trips};
use crate::peers::ends::{OneWay, Word, drain, echo, feed};

/// Round trips per block of [`ours_pipe`].
pub const PIPE_TRIPS: u32 = 100;

/// One end of a `shmproc::Queue<u64>`: `put` and `get`.
struct QueueEnd(Queue<u64>);

impl Word for QueueEnd {
    fn put(&mut self, v: u64) {
        self.0.put(v).unwrap_or_else(|e| panic!("Queue::put: {e}"));
    }

    fn take(&mut self) -> u64 {
        self.0.get().unwrap_or_else(|e| panic!("Queue::get: {e}"))
    }
}

/// One end of a duplex `shmproc::Pipe`: 8 bytes by `send_bytes`/`recv_bytes`.
struct PipeEnd(Connection);

impl Word for PipeEnd {
    fn put(&mut self, v: u64) {
        self.0.send_bytes(&v.to_le_bytes()).expect("Connection::send_bytes");
    }

    fn take(&mut self) -> u64 {
        let bytes = self.0.recv_bytes().expect("Connection::recv_bytes");
        u64::from_le_bytes(bytes.as_slice().try_into().expect("8 bytes"))
    }
}

/// `shmproc::Queue<u64>` (no size limit, as Python's): items per second from
/// a producer process on `cpus.1` to this process on `cpus.0`, blocks of
/// `items` after one warm-up block.
///
/// # Errors
///
/// If the queue cannot be made.
pub fn ours_queue(mode: Mode, cpus: (usize, usize), items: usize) -> Result<Stats, String> {
    let q = Queue::<u64>::new(0).map_err(|e| e.to_string())?;
    let case = (
        feed(OneWay(QueueEnd(q.clone()))),
        drain(OneWay(QueueEnd(q))),
        items as u64,
    );
    Ok(flows(Peer::Process, cpus, vec![case], mode.scale(30), mode.warmup(1))[0])
}

/// `shmproc::Pipe` (duplex): 8-byte round trips with an echoing child, blocks
/// of [`PIPE_TRIPS`], about `trips` in all.
///
/// # Errors
///
/// If the pipe cannot be made.
///
/// # Panics
///
/// If the child fails or an answer is wrong.
pub fn ours_pipe(mode: Mode, cpus: (usize, usize), trips: u32) -> Result<Trips, String> {
    let (a, b) = Pipe::new(true).map_err(|e| e.to_string())?;
    let per = PIPE_TRIPS.min(trips);
    let case = (echo(PipeEnd(a)), echo(PipeEnd(b)), per);
    let blocks = usize::try_from(trips / per).expect("a small count").max(1);
    let mut t = round_trips(Peer::Process, cpus, vec![case], blocks, mode.warmup(2));
    Ok(t.swap_remove(0))
}

/// Python's numbers, for the rows and the latency chart.
#[derive(Clone, Debug)]
pub struct PythonPeers {
    /// `Python 3.11.7`.
    pub name: String,
    /// `multiprocessing.Queue`, items per second.
    pub queue: Option<Stats>,
    /// `multiprocessing.Pipe`, seconds per round trip.
    pub pipe: Option<Stats>,
    /// p50, p90, p99, p99.9 of the Pipe round trips.
    pub pipe_tail: Option<[f64; 4]>,
    /// Our Pipe's round trips, once measured.
    pub ours_pipe: Option<Trips>,
}

/// Runs the script, our side, and adds the rows.
///
/// # Panics
///
/// If one of our children fails or a message arrives damaged.
pub fn rows(mode: Mode, cpus: (usize, usize), report: &mut Report, place: &str) -> PythonPeers {
    let items = if mode == Mode::Smoke { 2000 } else { 100_000 };
    let trips = mode.scale(2000);
    let args = python::args(&[
        ("--items", items),
        ("--samples", mode.scale(7).max(3)),
        ("--trips", trips),
        ("--warmup", mode.warmup(100)),
    ]);
    let py = python::run("mp_queue_pipe.py", &args);
    let name = match &py {
        Ok(j) => format!("Python {}", j.text("python").unwrap_or("3")),
        Err(why) => {
            report
                .skipped
                .push(format!("Python multiprocessing Queue/Pipe rows ({why})"));
            "Python".to_owned()
        }
    };
    let get = |key: &str, unit| py.as_ref().ok().and_then(|j| j.stats(key, unit));
    let (queue, pipe) = (get("queue", Unit::PerSecond), get("pipe", Unit::Seconds));
    let pipe_tail = py.as_ref().ok().and_then(|j| {
        let at = |k: &str| j.number(&format!("pipe{k}"));
        Some([at("")?, at("_p90")?, at("_p99")?, at("_p999")?])
    });
    let queue_name = format!("{name} multiprocessing.Queue, small ints, 1 producer process");
    let pipe_name = format!("{name} multiprocessing.Pipe, 8 B round trip");
    for (m, s) in [(&queue_name, queue), (&pipe_name, pipe)] {
        if let Some(s) = s {
            report.measure(Measured::new(m, s));
        }
    }
    let queue_bench = format!("Queue, small ints one way, {place}");
    let row = match ours_queue(mode, cpus, items) {
        Ok(s) => {
            let ours = report.measure(Measured::new("shm Queue<u64>, put/get", s));
            Row::new(queue_bench, ours, &queue_name, queue).target(Target::AtLeast(100.0))
        }
        Err(why) => {
            report.notes.push(format!("shm Queue row: {why}"));
            Row::pending(queue_bench, "shm Queue", &queue_name, queue)
        }
    };
    report.rows.push(row);
    let pipe_bench = format!("Pipe, 8 B round trip, {place}");
    let trips = u32::try_from(trips).expect("a few thousand round trips");
    let ours_pipe = ours_pipe(mode, cpus, trips);
    let row = match &ours_pipe {
        Ok(t) => {
            let ours = report.measure(Measured::new("shm Pipe, send_bytes/recv_bytes", t.mean));
            Row::new(pipe_bench, ours, &pipe_name, pipe).target(Target::AtMost(0.05))
        }
        Err(why) => {
            report.notes.push(format!("shm Pipe row: {why}"));
            Row::pending(pipe_bench, "shm Pipe", &pipe_name, pipe)
        }
    };
    report.rows.push(row);
    PythonPeers {
        name,
        queue,
        pipe,
        pipe_tail,
        ours_pipe: ours_pipe.ok(),
    }
}
