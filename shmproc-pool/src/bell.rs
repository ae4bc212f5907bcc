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
//! when the worker dies, and how many tasks it finished, so that progress
//! moves task by task inside a chunk. Both are input from the worker: the
//! driver checks them against what it sent.

use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};
use shmproc_core::RawArray;
use shmproc_core::sys::{self, Deadline};

/// Words per worker slot: a cache line.
const STRIDE: usize = 8;
const RUNNING: usize = 0;
const DONE: usize = 1;

/// The doorbell (word 0: rings, word 1: the driver's sleep flag) and the
/// slots' words.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Bell {
    bell: RawArray<u32>,
    words: RawArray<u64>,
}

impl Bell {
    pub(crate) fn new(slots: usize) -> Result<Self, shmproc_core::SegmentError> {
        sys::membarrier_register();
        Ok(Self {
            bell: RawArray::new(16)?,
            words: RawArray::new(slots.max(1) * STRIDE)?,
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
        for w in [RUNNING, DONE] {
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
        }
    }
}

/// A worker's own words (see the module docs), looked up once per chunk.
pub(crate) struct SlotWords<'a> {
    running: Option<&'a AtomicU64>,
    done: Option<&'a AtomicU64>,
}

impl SlotWords<'_> {
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
