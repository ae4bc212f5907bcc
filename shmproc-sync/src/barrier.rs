//! `Barrier`: `parties` processes or threads wait until all have arrived
//! (Python's `multiprocessing.Barrier`).
//!
//! # Algorithm
//!
//! One word holds `BROKEN` (bit 31), the round's generation (bits 16-30)
//! and the arrivals of this round (bits 0-15). An arrival is one
//! `fetch_add`, which gives each party its distinct index and its round at
//! once. The last to arrive runs the action (exactly once per round, before
//! anyone leaves), then stores the next generation with no arrivals and
//! wakes everyone. Waiters sleep on the word and leave when its generation
//! moves on; they sleep in slices and check that the parties already
//! arrived still run, so a party killed while waiting breaks the barrier for
//! all. A timeout, `abort`, or a panicking action breaks it too, until
//! `reset`; `reset` also bumps an epoch so that parties of the old round
//! leave with the broken error, as in Python.
//!
//! A party that dies *before* arriving cannot be told from a slow one: a
//! timeout is the remedy, as in Python.
//!
//! # Memory ordering
//!
//! Arrivals are `AcqRel` and the release store is Release, read with Acquire
//! by the waiters: everything every party wrote before `wait` is visible to
//! every party after it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc_core::sys::{Deadline, FutexWait};
use shmproc_core::{SegmentError, SegmentKind};

#[cfg(not(loom))]
use crate::action::Action;
use crate::error::BarrierError;
#[cfg(not(loom))]
use crate::park::Futex;
use crate::park::Park;
#[cfg(not(loom))]
use crate::shared::Shared;
use crate::shared::SharedState;
use crate::sync::AtomicU32;
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// Most parties one barrier takes.
pub const MAX_PARTIES: u32 = 1024;
const ARRIVALS: usize = if cfg!(loom) { 4 } else { MAX_PARTIES as usize };

pub(crate) const BROKEN: u32 = 1 << 31;
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x7fff;
pub(crate) const COUNT: u32 = 0xffff;

fn generation(word: u32) -> u32 {
    (word >> GEN_SHIFT) & GEN_MASK
}

/// The words of a barrier.
#[repr(C)]
pub(crate) struct RawBarrier {
    word: AtomicU32,
    parties: AtomicU32,
    epoch: AtomicU32,
    /// Thread ids of this round's arrivals, by index, for liveness checks.
    arrivals: [AtomicU32; ARRIVALS],
}

// SAFETY: AtomicU32 fields only, repr(C); zero parties is rejected on use.
unsafe impl SharedState for RawBarrier {
    const KIND: SegmentKind = SegmentKind::BARRIER;
}

impl RawBarrier {
    /// A fresh barrier for `parties` on the heap (loom models).
    #[cfg(loom)]
    pub(crate) fn new_boxed(parties: u32) -> Box<Self> {
        Box::new(Self {
            word: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            epoch: AtomicU32::new(0),
            arrivals: std::array::from_fn(|_| AtomicU32::new(0)),
        })
    }

    fn parties(&self) -> Result<u32, BarrierError> {
        // Relaxed: set once before the barrier is shared. Checked, since
        // a peer may have scribbled on it: out of range, it is broken.
        match self.parties.load(Relaxed) {
            p @ 1..=MAX_PARTIES => Ok(p),
            _ => Err(BarrierError::Broken),
        }
    }

    fn break_it<P: Park>(&self) {
        // Release: waiters that see BROKEN leave at once.
        self.word.fetch_or(BROKEN, Release);
        P::wake(&self.word, u32::MAX);
    }

    pub(crate) fn wait<P: Park>(
        &self,
        me: u32,
        action: Option<&dyn Fn()>,
        deadline: Option<Deadline>,
    ) -> Result<u32, BarrierError> {
        let parties = self.parties()?;
        // Acquire: pairs with the epoch bump of `reset`.
        let epoch = self.epoch.load(Acquire);
        // AcqRel: the arrival publishes our writes and sees earlier ones.
        let old = self.word.fetch_add(1, AcqRel);
        if old & BROKEN != 0 {
            return Err(BarrierError::Broken);
        }
        let index = old & COUNT;
        if index >= parties {
            // More arrivals than parties: the words were damaged.
            self.break_it::<P>();
            return Err(BarrierError::Broken);
        }
        let round = generation(old);
        self.arrivals[index as usize].store(me, Relaxed);
        if index + 1 == parties {
            if let Some(action) = action
                && std::panic::catch_unwind(std::panic::AssertUnwindSafe(action)).is_err()
            {
                self.break_it::<P>();
                return Err(BarrierError::Broken);
            }
            // Forget this round's arrivals before the next can begin: a slot
            // reads 0 ("unknown, alive") until its next arrival fills it.
            self.clear_arrivals(parties);
            // Release: pairs with the waiters' Acquire loads.
            self.word.store(((round + 1) & GEN_MASK) << GEN_SHIFT, Release);
            P::wake(&self.word, u32::MAX);
            return Ok(index);
        }
        let mut spins = crate::park::spins();
        loop {
            // Acquire: pairs with the release store of the last arrival.
            let word = self.word.load(Acquire);
            if word & BROKEN != 0 || self.epoch.load(Acquire) != epoch {
                return Err(BarrierError::Broken);
            }
            if generation(word) != round {
                return Ok(index);
            }
            if P::passed(deadline) {
                self.break_it::<P>();
                // The caller knows how long it waited.
                return Err(BarrierError::Timeout(Duration::ZERO));
            }
            if spins > 0 {
                spins -= 1;
                core::hint::spin_loop();
                continue;
            }
            if P::wait(&self.word, word, P::slice(deadline)) == FutexWait::TimedOut && self.a_party_died::<P>(word) {
                self.break_it::<P>();
                return Err(BarrierError::Broken);
            }
        }
    }

    fn a_party_died<P: Park>(&self, word: u32) -> bool {
        let arrived = ((word & COUNT) as usize).min(ARRIVALS);
        self.arrivals[..arrived].iter().any(|a| {
            // Relaxed: an id for a liveness check; a stale one reads as 0.
            let id = a.load(Relaxed);
            id != 0 && !P::alive(id)
        })
    }

    fn clear_arrivals(&self, parties: u32) {
        for a in &self.arrivals[..parties as usize] {
            // Relaxed: published by the Release store of the next word.
            a.store(0, Relaxed);
        }
    }

    fn reset<P: Park>(&self) {
        self.clear_arrivals(self.parties().unwrap_or(MAX_PARTIES));
        // Release: parties of the old round see the new epoch and leave.
        self.epoch.fetch_add(1, Release);
        // Relaxed: the generation to move past; the store below is Release.
        let word = self.word.load(Relaxed);
        self.word
            .store(((generation(word) + 1) & GEN_MASK) << GEN_SHIFT, Release);
        P::wake(&self.word, u32::MAX);
    }
}

#[cfg(not(loom))]
/// A barrier in shared memory (Python's `Barrier`).
///
/// # Examples
///
/// ```
/// let b = shmproc_sync::Barrier::new(1)?;
/// assert_eq!(b.wait(), Ok(0));
/// b.abort();
/// assert!(b.broken() && b.wait().is_err());
/// b.reset();
/// assert_eq!(b.wait(), Ok(0));
/// # Ok::<(), shmproc_core::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    shared: Shared<RawBarrier>,
    action: Option<Action>,
}

#[cfg(not(loom))]
impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

#[cfg(not(loom))]
impl Barrier {
    fn check(parties: u32) -> Result<(), SegmentError> {
        if (1..=MAX_PARTIES).contains(&parties) {
            Ok(())
        } else {
            Err(SegmentError::InvalidSize {
                requested: u64::from(parties),
                reason: "a barrier takes 1 to 1024 parties",
            })
        }
    }

    fn make(shared: Shared<RawBarrier>, parties: u32) -> Self {
        // Relaxed: set before the barrier is shared with anyone.
        shared.get().parties.store(parties, Relaxed);
        Self { shared, action: None }
    }

    /// A barrier for `parties` (1 to [`MAX_PARTIES`]).
    ///
    /// # Errors
    ///
    /// [`SegmentError::InvalidSize`] for a count out of range, or if the
    /// segment cannot be made.
    pub fn new(parties: u32) -> Result<Self, SegmentError> {
        Self::check(parties)?;
        Ok(Self::make(Shared::create()?, parties))
    }

    /// A barrier for `parties` in a segment named `name`, which any process
    /// may [`Barrier::open`] (without an action).
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`], and if the name is taken or invalid.
    pub fn create_named(name: &str, parties: u32) -> Result<Self, SegmentError> {
        Self::check(parties)?;
        Ok(Self::make(Shared::create_named(name)?, parties))
    }

    /// Opens the barrier named `name` (type, header and party count checked).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if there is none, it holds another type, or its
    /// party count is out of range.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        let shared: Shared<RawBarrier> = Shared::open(name)?;
        // Relaxed: set once at creation.
        Self::check(shared.get().parties.load(Relaxed))?;
        Ok(Self { shared, action: None })
    }

    /// A barrier for `parties` that runs `action(args)` once per round, in
    /// the last party to arrive, before any party leaves (Python's
    /// `action`). The action travels with the barrier to children as a
    /// process target does, under every start method; `args` may hold
    /// shared objects, as a target's arguments may. A panicking action
    /// breaks the barrier.
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`].
    pub fn with_action<A>(parties: u32, action: fn(A), args: A) -> Result<Self, SegmentError>
    where
        A: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let mut b = Self::new(parties)?;
        b.action = Some(Action::new(action, args));
        Ok(b)
    }

    /// Waits for all parties; returns this party's index (0 to parties - 1,
    /// distinct per party).
    ///
    /// # Errors
    ///
    /// [`BarrierError::Broken`] after another party's timeout, `abort`, a
    /// dead party, a panicking action, or damaged shared words.
    pub fn wait(&self) -> Result<u32, BarrierError> {
        self.wait_until(None)
    }

    /// As [`Barrier::wait`], giving up after `timeout`, which breaks the
    /// barrier for every party (as in Python).
    ///
    /// # Errors
    ///
    /// [`BarrierError::Timeout`] when this wait ran out, else as [`Barrier::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierError> {
        self.wait_until(Some(Deadline::after(timeout))).map_err(|e| match e {
            BarrierError::Timeout(_) => BarrierError::Timeout(timeout),
            e @ BarrierError::Broken => e,
        })
    }

    fn wait_until(&self, deadline: Option<Deadline>) -> Result<u32, BarrierError> {
        let call = self.action.as_ref().map(|a| move || a.call());
        self.shared
            .get()
            .wait::<Futex>(Futex::thread_id(), call.as_ref().map(|c| c as &dyn Fn()), deadline)
    }

    /// Breaks the barrier: current and later waiters fail until `reset`.
    pub fn abort(&self) {
        self.shared.get().break_it::<Futex>();
    }

    /// Makes the barrier usable again; parties waiting now fail.
    pub fn reset(&self) {
        self.shared.get().reset::<Futex>();
    }

    /// Its number of parties (0 if the shared count is damaged).
    pub fn parties(&self) -> u32 {
        self.shared.get().parties().unwrap_or(0)
    }

    /// How many wait in the current round.
    pub fn n_waiting(&self) -> u32 {
        // Relaxed: a snapshot for display.
        let word = self.shared.get().word.load(Relaxed);
        if word & BROKEN != 0 { 0 } else { word & COUNT }
    }

    /// Whether it is broken.
    pub fn broken(&self) -> bool {
        // Relaxed: a snapshot; `wait` itself re-reads with Acquire.
        self.shared.get().word.load(Relaxed) & BROKEN != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rounds_give_distinct_indices() {
        let b = Barrier::new(3).expect("create");
        for _ in 0..50 {
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let b = b.clone();
                    std::thread::spawn(move || b.wait_timeout(Duration::from_secs(60)))
                })
                .collect();
            let mut idx: Vec<u32> = threads
                .into_iter()
                .map(|t| t.join().expect("t").expect("wait"))
                .collect();
            idx.sort_unstable();
            assert_eq!(idx, [0, 1, 2]);
        }
    }

    #[test]
    fn timeout_breaks_it_for_everyone() {
        let b = Barrier::new(2).expect("create");
        assert_eq!(
            b.wait_timeout(Duration::from_millis(10)),
            Err(BarrierError::Timeout(Duration::from_millis(10)))
        );
        assert!(b.broken());
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        b.reset();
        assert!(!b.broken() && b.n_waiting() == 0);
        assert!(Barrier::new(0).is_err() && Barrier::new(MAX_PARTIES + 1).is_err());
    }
}

#[cfg(all(test, not(loom)))]
mod action_tests {
    use super::*;

    fn add((counter, n): (shmproc_core::RawValue<u64>, u64)) {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn explode(_: ()) {
        panic!("the action fails");
    }

    #[test]
    fn the_action_runs_once_per_round_with_its_arguments() {
        let counter = shmproc_core::RawValue::new(0u64).expect("value");
        let b = Barrier::with_action(2, add, (counter.clone(), 5)).expect("create");
        for _ in 0..3 {
            let other = {
                let b = b.clone();
                std::thread::spawn(move || b.wait_timeout(Duration::from_secs(60)))
            };
            b.wait_timeout(Duration::from_secs(60)).expect("this party");
            other.join().expect("thread").expect("that party");
        }
        assert_eq!(counter.get(), 15, "3 rounds, 5 each");
    }

    #[test]
    fn a_panicking_action_breaks_the_barrier() {
        let b = Barrier::with_action(1, explode, ()).expect("create");
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        assert!(b.broken());
    }
}
