//! Blocking round trips over two `shm::spsc` rings (`push` on one, `pop`
//! on the other; the child echoes), pinned one process per CPU, against
//! the futex sleep/wake floor of [`crate::ping_pong`].
//!
//! As in [`crate::wake_bench`]: with `park::set_spins(0)` in both
//! processes every `pop` that finds the ring empty sleeps at once, so the
//! round trip is compared with the floor; with the default spins the ratio
//! shows what spinning buys. Each spin setting is one set that alternates
//! with the floor in blocks of n / rounds round trips
//! ([`time_interleaved`]), each case with a child of its own (the idle
//! ones sleep); the floor is also measured alone before and after.

use std::sync::Arc;
use std::time::Instant;

use shm::park::{self, DEFAULT_SPINS};
use shm::spsc::{self, Consumer, Producer};

use crate::Mode;
use crate::affinity::pin_to;
use crate::ping_pong::{self, PingPong};
use crate::raw_sync::SharedMap;
use crate::ring_bench::fork_pinned;
use crate::stats::{Case, Stats, time_interleaved};

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
    /// The futex floor alone, after.
    pub after: Stats,
}

/// A parent's ends of one ring pair, and its child.
struct Pair {
    tx: Producer<u64>,
    rx: Consumer<u64>,
    child: shm::Process,
}

/// Two rings and a child on `cpu` that echoes `turns` messages with `spins`.
fn pair(spins: u32, cpu: usize, turns: u64) -> Pair {
    let (tx, mut child_rx) = spsc::channel::<u64>(64).expect("create a ring");
    let (mut child_tx, rx) = spsc::channel::<u64>(64).expect("create a ring");
    let child = fork_pinned(cpu, move || {
        park::set_spins(spins);
        for _ in 0..turns {
            // A parent that fails is seen as gone: `pop` then disconnects.
            let v = child_rx.pop().expect("the parent is alive");
            child_tx.push(v).expect("the parent is alive");
        }
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
    let mut pairs: Vec<Pair> = (SETTINGS.iter())
        .map(|&s| pair(s, cpus.1, turns as u64))
        .collect();
    let pin = pin_to(cpus.0).expect("pin the parent");
    let old = park::spins();
    let mut floors = Vec::new();
    let mut ours = Vec::new();
    let mut turn = 0u32;
    for (&spins, p) in SETTINGS.iter().zip(&mut pairs) {
        let (turn, floor) = (&mut turn, &*floor);
        let mut v = 0u64;
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
                let t = Instant::now();
                p.tx.push(v).expect("the child is alive");
                let got = p.rx.pop().expect("the child is alive");
                let dt = t.elapsed();
                assert_eq!(got, v, "the child echoed something else");
                dt
            }),
        ];
        let s = time_interleaved(mode.rounds(), &mut cases);
        floors.push(s[0]);
        ours.push(s[1]);
    }
    park::set_spins(old);
    drop(pin);
    for p in pairs {
        assert_eq!(p.child.join().expect("join a ring child"), 0, "a ring child failed");
    }
    assert_eq!(floor_child.join().expect("join the floor child"), 0, "the floor child failed");
    let after = ping_pong::measure(mode, Some(cpus));
    Sleeps {
        before,
        floors: [floors[0], floors[1]],
        ours: [ours[0], ours[1]],
        after,
    }
}
