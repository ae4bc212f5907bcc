//! The two-process hand-offs of [`crate::groups::wake`]: an [`Event`] pair and
//! a [`Condition`] over a turn counter, each driven by the parent one round
//! trip at a time and answered by a forked child, and the count of
//! voluntary context switches (futex sleeps) a run of round trips makes.
//!
//! Both sides wait with a timeout of [`ABANDONED`] (as the futex floor of
//! [`crate::groups::ping_pong`] does), so that a child whose parent failed exits
//! instead of sleeping forever; the deadline costs one `clock_gettime`.
//!
//! # Memory ordering
//!
//! The counter of the voluntary context switches a child saw is stored
//! Relaxed and read by the parent after `waitpid`. Everything else is
//! ordered by the primitives under test.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Instant;

use shmproc::{Condition, Event, Process, RawValue, SegmentError};
use shmproc_sync::park;

use crate::groups::ping_pong::ABANDONED;
use crate::harness::affinity::pin_to;
use crate::harness::shared_map::{AtomicU32, AtomicU64, SharedMap};

/// Two events, one per direction. The parent: `ping.set(); pong.wait();
/// pong.clear()`; the child: `ping.wait(); ping.clear(); pong.set()`.
#[derive(Clone, Debug)]
pub struct Events {
    ping: Event,
    pong: Event,
}

/// A condition (over its default `RLock`) and the turn counter it guards:
/// the parent makes it odd (`2i - 1`), notifies and waits for it to turn
/// even (`2i`); the child does the mirror. Each side takes and releases the
/// lock every round trip.
#[derive(Clone, Debug)]
pub struct Turns {
    cond: Condition,
    turn: RawValue<u32>,
}

/// One of the hand-offs under test.
#[derive(Clone, Debug)]
pub enum Pair {
    /// Two [`Event`]s.
    Event(Events),
    /// A [`Condition`] and a counter.
    Condition(Turns),
}

impl Pair {
    /// A fresh, idle event pair.
    pub fn events() -> Result<Self, SegmentError> {
        Ok(Self::Event(Events {
            ping: Event::new()?,
            pong: Event::new()?,
        }))
    }

    /// A fresh condition with its counter at 0.
    pub fn condition() -> Result<Self, SegmentError> {
        Ok(Self::Condition(Turns {
            cond: Condition::new()?,
            turn: RawValue::new(0)?,
        }))
    }

    /// The primitive's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Event(_) => "Event",
            Self::Condition(_) => "Condition",
        }
    }

    /// The parent's side: round trip `i` (1, 2, ...).
    ///
    /// # Panics
    ///
    /// If the child does not answer within [`ABANDONED`].
    pub fn round_trip(&self, i: u32) {
        match self {
            Self::Event(e) => {
                e.ping.set();
                assert!(e.pong.wait_timeout(ABANDONED), "Event child stopped answering");
                e.pong.clear();
            }
            Self::Condition(t) => {
                let mut g = t.cond.acquire_timeout(ABANDONED).expect("Condition lock not taken");
                t.turn.set(2 * i - 1);
                g.notify(1);
                let answered = g.wait_for_timeout(|| t.turn.get() == 2 * i, ABANDONED);
                drop(g);
                assert_eq!(answered, Ok(true), "Condition child stopped answering");
            }
        }
    }

    /// The child's side of round trip `i`; false if the parent stopped
    /// asking for [`ABANDONED`].
    fn answer(&self, i: u32) -> bool {
        match self {
            Self::Event(e) => {
                if !e.ping.wait_timeout(ABANDONED) {
                    return false;
                }
                e.ping.clear();
                e.pong.set();
                true
            }
            Self::Condition(t) => {
                let Ok(mut g) = t.cond.acquire_timeout(ABANDONED) else {
                    return false;
                };
                let asked = g.wait_for_timeout(|| t.turn.get() == 2 * i - 1, ABANDONED) == Ok(true);
                if asked {
                    t.turn.set(2 * i);
                    g.notify(1);
                }
                asked
            }
        }
    }
}

/// What a child does: answer turns `1..=turns` with `spins`, pinned to
/// `cpu`; count its voluntary context switches after answering turn
/// `count_from` until the last turn.
#[derive(Clone, Copy, Debug)]
pub struct Serve {
    /// Spins before sleeping ([`park::set_spins`]), set in the child.
    pub spins: u32,
    /// The child's CPU, or unpinned.
    pub cpu: Option<usize>,
    /// Turns to answer in all.
    pub turns: u32,
    /// The turn after which counting starts.
    pub count_from: u32,
}

/// Forks a child that serves `pair` as `how` says and stores the voluntary
/// context switches it counted in `out`.
///
/// # Panics
///
/// If the child cannot be started.
pub fn start_child<const N: usize>(
    pair: &Pair,
    how: Serve,
    out: &Arc<SharedMap<[AtomicU64; N]>>,
    slot: usize,
) -> Process {
    let (pair, out) = (pair.clone(), Arc::clone(out));
    let child = Process::from_closure(move || {
        park::set_spins(how.spins);
        let _pin = how.cpu.map(|c| pin_to(c).expect("pin a wake child"));
        let mut from = 0;
        for i in 1..=how.turns {
            if !pair.answer(i) {
                return;
            }
            if i == how.count_from {
                from = voluntary_switches();
            }
        }
        // Relaxed: read by the parent after waitpid.
        out[slot].store(voluntary_switches() - from, Relaxed);
    });
    child.start().expect("start a wake child");
    child
}

/// This thread's voluntary context switches so far: each is a sleep (a
/// futex wait that blocked); a wait that caught its wake-up while spinning
/// adds none.
///
/// # Panics
///
/// If `getrusage` fails.
pub fn voluntary_switches() -> u64 {
    // SAFETY: all-zero is a valid `rusage` (integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is writable and of the type the call fills.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut ru) };
    assert_eq!(r, 0, "getrusage: {}", std::io::Error::last_os_error());
    u64::try_from(ru.ru_nvcsw).expect("a count is non-negative")
}

/// Seconds that `spins` load-only spins take when nothing changes: how
/// long a waiter stays on the spin path before it sleeps (as `park` spins:
/// a pause, then an Acquire load).
pub fn spin_window(spins: u32) -> f64 {
    const REPS: u32 = 200;
    let word = AtomicU32::new(0);
    let t = Instant::now();
    for _ in 0..REPS {
        for _ in 0..spins {
            core::hint::spin_loop();
            // Acquire: as a waiter's look; nobody ever changes the word.
            if std::hint::black_box(&word).load(Acquire) != 0 {
                break;
            }
        }
    }
    t.elapsed().as_secs_f64() / f64::from(REPS)
}
