//! Two processes doing the same work at once, started together: the
//! harness of the contended rows in [`crate::groups::sync`].
//!
//! Each child is forked with `Process::from_closure`, pins itself to a CPU
//! of its own, counts itself in at a start line, and spins until every
//! child has arrived, so that all of them run at once. Neither half is
//! optional on two CPUs: after a parent's "go" the first child woken ran
//! its 200k uncontended 5 ns operations before the second was scheduled,
//! and unpinned, about one run in eight had both children queued on one
//! CPU, taking turns by time slice (fairness 0.5). Then each stamps
//! `CLOCK_MONOTONIC`, runs its operations and stamps again. A run lasts
//! from the first start to the last finish, so process start and exit are
//! not counted.
//!
//! # Memory ordering
//!
//! The start line is counted with `AcqRel` and read with Acquire (a
//! barrier). The stamps are Relaxed: the parent reads them after `waitpid`.

use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::Duration;

use shmproc::Process;

use crate::harness::affinity::{allowed_cpus, pin_to};
use crate::harness::shared_map::{AtomicU32, AtomicU64, Padded, SharedMap, ZeroShared};

/// Children in a contended run.
pub const KIDS: usize = 2;

/// The start line and finish stamps of a run, shared with the children.
#[repr(C)]
#[derive(Debug, Default)]
struct Board {
    ready: Padded<AtomicU32>,
    start: Padded<[AtomicU64; KIDS]>,
    end: Padded<[AtomicU64; KIDS]>,
}

// SAFETY: padded atomics only; zero is "nobody ready, no stamps".
unsafe impl ZeroShared for Board {}

/// One contended run.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// First start to last finish.
    pub elapsed: Duration,
    /// First finisher's time over the last's: 1.0 when both end together,
    /// 0.5 when one ran all its operations before the other began.
    pub fairness: f64,
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is writable; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    let secs = u64::try_from(ts.tv_sec).expect("monotonic time is positive");
    secs * 1_000_000_000 + u64::try_from(ts.tv_nsec).expect("nanoseconds are positive")
}

/// Runs contended rounds; made once and reused (fresh shared pages cost
/// a first touch each, `MACHINE.md`).
#[derive(Clone, Debug)]
pub struct Contention {
    board: Arc<SharedMap<Board>>,
    /// The CPU of each child; unpinned when fewer CPUs are allowed.
    cpus: Option<[usize; KIDS]>,
}

impl Contention {
    /// Maps the board and picks a CPU for each child.
    ///
    /// # Errors
    ///
    /// If `mmap` or `sched_getaffinity` fails.
    pub fn new() -> std::io::Result<Self> {
        let cpus = allowed_cpus()?;
        Ok(Self {
            board: Arc::new(SharedMap::new()?),
            cpus: cpus.get(..KIDS).and_then(|c| c.try_into().ok()),
        })
    }

    /// Whether each child runs pinned to a CPU of its own.
    pub fn pinned(&self) -> bool {
        self.cpus.is_some()
    }

    /// Forks [`KIDS`] children that each call `op` `ops` times, started
    /// together; see the module docs for what is timed.
    ///
    /// # Panics
    ///
    /// If a child cannot be started or fails.
    pub fn run<F>(&self, ops: u32, op: F) -> Run
    where
        F: Fn() + Clone + Send + 'static,
    {
        let b = &*self.board;
        // Relaxed: no child exists yet; the fork orders this store before it.
        b.ready.store(0, Relaxed);
        let all = u32::try_from(KIDS).expect("a few children");
        let kids: Vec<Process> = (0..KIDS)
            .map(|i| {
                let (board, op) = (Arc::clone(&self.board), op.clone());
                let cpu = self.cpus.map(|c| c[i]);
                Process::from_closure(move || {
                    let _pin = cpu.map(|c| pin_to(c).expect("pin a contending child"));
                    // AcqRel/Acquire: a barrier among the children.
                    board.ready.fetch_add(1, AcqRel);
                    let mut spins = 0u32;
                    while board.ready.load(Acquire) < all {
                        spins = spins.wrapping_add(1);
                        if spins.is_multiple_of(1024) {
                            // Unpinned, a sibling may be queued on this CPU: let it run.
                            std::thread::yield_now();
                        }
                        core::hint::spin_loop();
                    }
                    // Relaxed: read by the parent after waitpid.
                    board.start[i].store(now_ns(), Relaxed);
                    for _ in 0..ops {
                        op();
                    }
                    // Relaxed: as above.
                    board.end[i].store(now_ns(), Relaxed);
                })
            })
            .collect();
        for k in &kids {
            k.start().expect("start a contending child");
        }
        for k in &kids {
            assert_eq!(
                k.join().expect("join a contending child"),
                0,
                "a contending child failed"
            );
        }
        // Relaxed: the children have exited and been reaped.
        let stamps = |a: &[AtomicU64; KIDS]| a.iter().map(|s| s.load(Relaxed)).collect::<Vec<_>>();
        let (start, end) = (stamps(&b.start), stamps(&b.end));
        let t0 = start.iter().copied().min().expect("children");
        let first = end.iter().copied().min().expect("children") - t0;
        let last = end.iter().copied().max().expect("children") - t0;
        let secs = |ns: u64| Duration::from_nanos(ns).as_secs_f64();
        Run {
            elapsed: Duration::from_nanos(last),
            fairness: secs(first) / secs(last.max(1)),
        }
    }
}
