//! The pool's doorbell and per-worker words, in shared memory.
//!
//! The driver thread reads the result rings of every worker, so it cannot
//! sleep in one ring's handshake. It sleeps on the doorbell instead: a
//! futex word that a worker bumps after it sends results, if the driver
//! said it sleeps. The handshake is the rings' (`ring::handshake`): the
//! sleeper raises its flag and issues a membarrier, then looks at every
//! ring once more; the ringing side needs only a compiler barrier between
//! its send and its look at the flag.
//!
//! Per worker slot, one cache line of words the worker writes: the task it
//! runs (`seq + 1`, 0 between tasks), so that the pool blames the right task
//! when the worker dies, how many tasks it finished, so that progress moves
//! task by task inside a chunk, and its owner id (pid and start tag), for
//! the command `shm`. All are input from the worker: the driver checks them
//! against what it sent. They live in a segment of their own kind
//! ([`SegmentKind::POOL`]), by which the command `shm` knows a pool.

use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};
use shmproc_core::segment::{Field, Mapped, State, word64_at};
use shmproc_core::sys::{self, Deadline};
use shmproc_core::{RawArray, Segment, SegmentError, SegmentKind, SegmentObject, TypeIdentity};

/// Words per worker slot: a cache line.
const STRIDE: usize = 8;
const RUNNING: usize = 0;
const DONE: usize = 1;
const WORKER: usize = 2;

/// The slots' words, in a segment of kind [`SegmentKind::POOL`].
#[derive(Clone, Debug)]
pub(crate) struct Words {
    map: Mapped<AtomicU64>,
    len: usize,
}

impl SegmentObject for Words {
    fn identity() -> TypeIdentity {
        TypeIdentity {
            kind: SegmentKind::POOL,
            name: "shmproc::pool::Workers",
            size: 8,
            align: 8,
        }
    }

    /// Checks the header's type, and that the payload is whole words.
    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let (map, len) = Mapped::with_count(seg, &Self::identity(), None)?;
        Ok(Self { map, len })
    }

    fn segment(&self) -> &Segment {
        self.map.segment()
    }
}

// SAFETY: the payload is `len` AtomicU64 (checked in `attach`), reached only
// through shared references to atomics, and `map` keeps the mapping alive.
shmproc_core::segment_object!(unsafe Send + Sync, [] Words);

impl Words {
    fn atomics(&self) -> &[AtomicU64] {
        // SAFETY: `len` AtomicU64 in bounds (checked at attach), 128-aligned
        // payload; atomics accept any bits and may alias across processes
        // by design; the mapping lives as long as `self.map`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().as_ptr(), self.len) }
    }
}

/// What the command `shm` shows of a pool, from a private copy of its words
/// segment's payload: each worker's pid (alive or not), the task it runs,
/// the tasks it finished.
#[doc(hidden)]
pub fn describe(kind: SegmentKind, payload: &[u8]) -> Option<State> {
    if kind != SegmentKind::POOL {
        return None;
    }
    let slots = payload.len() / (8 * STRIDE);
    let word = |slot: usize, which: usize| word64_at(payload, 8 * (slot * STRIDE + which));
    let (mut workers, mut busy, mut done) = (0u64, 0u64, 0u64);
    let mut s = State::new();
    for slot in 0..slots {
        let (running, finished, worker) = (word(slot, RUNNING)?, word(slot, DONE)?, word(slot, WORKER)?);
        busy += u64::from(running != 0);
        done = done.saturating_add(finished);
        let Ok(id) = u32::try_from(worker) else { continue };
        if id != 0 {
            workers += 1;
            s.push(("worker", shmproc_sync::inspect::owner(id)));
        }
    }
    s.insert(0, ("tasks done", Field::Count(done)));
    s.insert(0, ("tasks running", Field::Count(busy)));
    s.insert(0, ("workers", Field::Count(workers)));
    Some(s)
}

/// The doorbell (word 0: rings, word 1: the driver's sleep flag) and the
/// slots' words.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Bell {
    bell: RawArray<u32>,
    words: Words,
}

impl Bell {
    pub(crate) fn new(slots: usize) -> Result<Self, shmproc_core::SegmentError> {
        sys::membarrier_register();
        Ok(Self {
            bell: RawArray::new(16)?,
            words: Words::create(slots.max(1) * STRIDE * 8)?,
        })
    }

    fn count(&self) -> &AtomicU32 {
        &self.bell.atomics()[0]
    }

    fn flag(&self) -> &AtomicU32 {
        &self.bell.atomics()[1]
    }

    /// Wakes the driver if it sleeps (after sending it something).
    #[inline]
    pub(crate) fn ring(&self) {
        // The fast side of the handshake (module docs).
        sys::membarrier_light();
        // Relaxed: ordered by the sleeper's membarrier.
        if self.flag().load(Relaxed) != 0 {
            self.count().fetch_add(1, Relaxed);
            sys::futex_wake(self.count(), 1);
        }
    }

    /// The driver's sleep: raises the flag, and unless `ready()` finds work
    /// once the flag is visible, sleeps until rung or `timeout`.
    pub(crate) fn sleep(&self, timeout: std::time::Duration, ready: impl FnOnce() -> bool) {
        let seen = self.count().load(Relaxed);
        // Relaxed + membarrier: the slow side of the handshake.
        self.flag().store(1, Relaxed);
        sys::membarrier_global();
        if !ready() {
            let _ = sys::futex_wait(self.count(), seen, Some(Deadline::after(timeout)));
        }
        self.flag().store(0, Relaxed);
    }

    fn word(&self, slot: usize, which: usize) -> Option<&AtomicU64> {
        self.words.atomics().get(slot * STRIDE + which)
    }

    /// Clears a slot's words before a worker starts in it.
    pub(crate) fn reset(&self, slot: usize) {
        for w in [RUNNING, DONE, WORKER] {
            if let Some(a) = self.word(slot, w) {
                a.store(0, Relaxed);
            }
        }
    }

    /// The task a slot's worker runs (`None` between tasks).
    pub(crate) fn running(&self, slot: usize) -> Option<u64> {
        // Relaxed: read after the worker died (its stores are all visible
        // once its exit is observed) or as a hint for the task timeout.
        let v = self.word(slot, RUNNING).map_or(0, |a| a.load(Relaxed));
        v.checked_sub(1)
    }

    /// How many tasks a slot's worker says it finished.
    pub(crate) fn finished(&self, slot: usize) -> u64 {
        // Relaxed: a progress count, checked against what was sent.
        self.word(slot, DONE).map_or(0, |a| a.load(Relaxed))
    }

    /// The words a slot's worker writes as it runs tasks.
    pub(crate) fn slot(&self, slot: usize) -> SlotWords<'_> {
        SlotWords {
            running: self.word(slot, RUNNING),
            done: self.word(slot, DONE),
            worker: self.word(slot, WORKER),
        }
    }
}

/// A worker's own words (see the module docs), looked up once per chunk.
pub(crate) struct SlotWords<'a> {
    running: Option<&'a AtomicU64>,
    done: Option<&'a AtomicU64>,
    worker: Option<&'a AtomicU64>,
}

impl SlotWords<'_> {
    /// Says which process the slot's worker is (its owner id).
    pub(crate) fn hello(&self, owner_id: u32) {
        if let Some(w) = self.worker {
            // Relaxed: read only by the command `shm`.
            w.store(owner_id.into(), Relaxed);
        }
    }

    /// Says that the worker starts task `seq`.
    #[inline]
    pub(crate) fn start(&self, seq: u64) {
        if let Some(r) = self.running {
            // Relaxed: see `Bell::running`.
            r.store(seq + 1, Relaxed);
        }
    }

    /// Says that the worker finished its task.
    #[inline]
    pub(crate) fn done(&self) {
        if let Some(r) = self.running {
            r.store(0, Relaxed);
        }
        if let Some(d) = self.done {
            // Relaxed: a progress count; only this worker writes it.
            d.store(d.load(Relaxed) + 1, Relaxed);
        }
    }
}
