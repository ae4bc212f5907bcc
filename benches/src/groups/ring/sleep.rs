//! Blocking round trips over two `shmproc::spsc` rings (`push` on one, `pop`
//! on the other; the child echoes), pinned one process per CPU, against
//! the futex sleep/wake floor of [`crate::groups::ping_pong`].
//!
//! As in [`crate::groups::wake`]: with `park::set_spins(0)` in both
//! processes every `pop` that finds the ring empty sleeps at once, so the
//! round trip is compared with the floor; with the default spins the ratio
//! shows what spinning buys. Each spin setting is one set that alternates
//! with the floor in blocks of n / rounds round trips
//! ([`time_interleaved`]), each case with a child of its own (the idle
//! ones sleep); the floor is also measured alone before and after. The
//! parent counts its voluntary context switches (its sleeps) around each
//! of our round trips, outside the timed part; each child counts its own
//! over all its round trips.
//!
//! # Memory ordering
//!
//! A child's count is stored Relaxed and read after `waitpid`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use shmproc::park::{self, DEFAULT_SPINS};
use shmproc::spsc::{self, Consumer, Producer};

use crate::Mode;
use crate::groups::ping_pong::{self, PingPong};
use crate::groups::ring::{float, fork_pinned};
use crate::groups::wake::pairs::voluntary_switches;
use crate::harness::affinity::pin_to;
use crate::harness::shared_map::{AtomicU64, SharedMap};
use crate::harness::stats::{Case, Stats, time_interleaved};

/// The spin settings, in report order.
pub const SETTINGS: [u32; 2] = [0, DEFAULT_SPINS];

/// What the blocking round trips measured, seconds per round trip.
#[derive(Clone, Copy, Debug)]
pub struct Sleeps {
    /// The futex floor alone, before.
    pub before: Stats,
    /// The floor alternating with each setting's case, in [`SETTINGS`] order.
    pub floors: [Stats; 2],
    /// Ours with each setting.
    pub ours: [Stats; 2],
    /// The parent's sleeps per round trip of ours, with each setting.
    pub sleeps: [f64; 2],
    /// The child's sleeps per round trip, with each setting.
    pub child_sleeps: [f64; 2],
    /// The futex floor alone, after.
    pub after: Stats,
}

/// A parent's ends of one ring pair, and its child.
struct Pair {
    tx: Producer<u64>,
    rx: Consumer<u64>,
    child: shmproc::Process,
}

/// Two rings and a child on `cpu` that echoes `turns` messages with
/// `spins`, then stores its sleeps in `board[slot]`.
fn pair(spins: u32, cpu: usize, turns: u64, board: &Arc<SharedMap<[AtomicU64; 2]>>, slot: usize) -> Pair {
    let board = Arc::clone(board);
    let (tx, mut child_rx) = spsc::channel::<u64>(64).expect("create a ring");
    let (mut child_tx, rx) = spsc::channel::<u64>(64).expect("create a ring");
    let child = fork_pinned(cpu, move || {
        park::set_spins(spins);
        let before = voluntary_switches();
        for _ in 0..turns {
            // A parent that fails is seen as gone: `recv` then disconnects.
            let v = child_rx.recv().expect("the parent is alive");
            child_tx.send(v).expect("the parent is alive");
        }
        // Relaxed: read by the parent after waitpid.
        board[slot].store(voluntary_switches() - before, Relaxed);
    });
    Pair { tx, rx, child }
}

/// Measures the floor alone, both sets, and the floor alone again.
///
/// # Panics
///
/// If a mapping, a ring, the pinning or a child fails.
pub fn measure(mode: Mode, cpus: (usize, usize)) -> Sleeps {
    let (n, w) = (mode.scale(2000), mode.warmup(100));
    let turns = n + w;
    let before = ping_pong::measure(mode, Some(cpus));
    let floor = Arc::new(SharedMap::<PingPong>::new().expect("map the ping-pong words"));
    let floor_child = {
        let floor = Arc::clone(&floor);
        let all = u32::try_from(turns * SETTINGS.len()).expect("a few thousand turns");
        fork_pinned(cpus.1, move || floor.serve(all))
    };
    let board = Arc::new(SharedMap::<[AtomicU64; 2]>::new().expect("map the sleep counts"));
    let mut pairs: Vec<Pair> = (SETTINGS.iter().enumerate())
        .map(|(k, &s)| pair(s, cpus.1, turns as u64, &board, k))
        .collect();
    let pin = pin_to(cpus.0).expect("pin the parent");
    let old = park::spins();
    let mut floors = Vec::new();
    let mut ours = Vec::new();
    let mut sleeps = Vec::new();
    let mut turn = 0u32;
    for (&spins, p) in SETTINGS.iter().zip(&mut pairs) {
        let (turn, floor) = (&mut turn, &*floor);
        let (mut v, mut slept) = (0u64, 0u64);
        let mut cases = [
            Case::timed(n, w, move || {
                *turn += 1;
                let t = Instant::now();
                floor.round_trip(*turn);
                t.elapsed()
            }),
            Case::timed(n, w, || {
                v += 1;
                park::set_spins(spins);
                let switches = voluntary_switches();
                let t = Instant::now();
                p.tx.send(v).expect("the child is alive");
                let got = p.rx.recv().expect("the child is alive");
                let dt = t.elapsed();
                slept += voluntary_switches() - switches;
                assert_eq!(got, v, "the child echoed something else");
                dt
            }),
        ];
        let s = time_interleaved(mode.rounds(), &mut cases);
        drop(cases);
        floors.push(s[0]);
        ours.push(s[1]);
        sleeps.push(float(slept) / float(v));
    }
    park::set_spins(old);
    drop(pin);
    for p in pairs {
        assert_eq!(p.child.join().expect("join a ring child"), 0, "a ring child failed");
    }
    assert_eq!(
        floor_child.join().expect("join the floor child"),
        0,
        "the floor child failed"
    );
    let after = ping_pong::measure(mode, Some(cpus));
    Sleeps {
        before,
        floors: [floors[0], floors[1]],
        ours: [ours[0], ours[1]],
        sleeps: [sleeps[0], sleeps[1]],
        // Relaxed: the children have exited and been reaped.
        child_sleeps: [0, 1].map(|k| float(board[k].load(Relaxed)) / float(turns as u64)),
        after,
    }
}
