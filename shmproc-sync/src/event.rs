//! `Event`: a flag that processes can wait on (Python's `multiprocessing.Event`).
//!
//! # Algorithm
//!
//! One word: `SET` (bit 0) and `WAITERS` (bit 1). A waiter that finds the
//! flag clear sets `WAITERS` and sleeps on the word with its full value, so
//! a `set` between its look and its sleep changes the word and the kernel
//! refuses the sleep. `set` swaps in `SET` (clearing `WAITERS`) and wakes
//! everyone only if `WAITERS` was there. Before sleeping a waiter spins
//! briefly: on this machine a futex wake-up costs 30-70 µs, a spin that
//! catches the `set` costs nothing.
//!
//! # Memory ordering
//!
//! `set`'s swap is Release and a waiter's load that sees `SET` is Acquire:
//! what the setter wrote before `set` is visible after `wait` returns true.
//! Setting `WAITERS` is Relaxed: the futex call re-reads the word.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc_core::SegmentKind;
use shmproc_core::sys::{Deadline, FutexWait};

#[cfg(not(loom))]
use crate::park::Futex;
use crate::park::Park;
#[cfg(not(loom))]
use crate::shared::Shared;
use crate::shared::SharedState;
use crate::sync::AtomicU32;
use crate::sync::Ordering::{Acquire, Relaxed, Release};

pub(crate) const SET: u32 = 1;
pub(crate) const WAITERS: u32 = 2;

/// The word of an event.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RawEvent {
    word: AtomicU32,
}

// SAFETY: one AtomicU32, repr(C); zero is "clear, nobody waits".
unsafe impl SharedState for RawEvent {
    const KIND: SegmentKind = SegmentKind::EVENT;
}

impl RawEvent {
    pub(crate) fn is_set(&self) -> bool {
        // Acquire: pairs with the Release swap in `set`.
        self.word.load(Acquire) & SET != 0
    }

    pub(crate) fn set<P: Park>(&self) {
        // Release: pairs with the Acquire loads of waiters.
        let old = self.word.swap(SET, Release);
        if old & WAITERS != 0 {
            P::wake(&self.word, u32::MAX);
        }
    }

    pub(crate) fn has_waiters(&self) -> bool {
        // Relaxed: a snapshot for diagnostics and tests.
        self.word.load(Relaxed) & WAITERS != 0
    }

    pub(crate) fn clear(&self) {
        // Relaxed: clearing publishes nothing; WAITERS is kept.
        self.word.fetch_and(!SET, Relaxed);
    }

    /// Waits until set or `deadline`; returns whether it is set.
    pub(crate) fn wait<P: Park>(&self, deadline: Option<Deadline>) -> bool {
        if self.is_set() {
            return true;
        }
        for _ in 0..crate::park::spins() {
            core::hint::spin_loop();
            if self.is_set() {
                return true;
            }
        }
        loop {
            // Acquire: pairs with the Release swap in `set`.
            let word = self.word.load(Acquire);
            if word & SET != 0 {
                return true;
            }
            if P::passed(deadline) {
                return false;
            }
            // Relaxed: only asks `set` to wake us; the futex call re-reads.
            if word & WAITERS == 0
                && self
                    .word
                    .compare_exchange(word, word | WAITERS, Relaxed, Relaxed)
                    .is_err()
            {
                continue;
            }
            if P::wait(&self.word, word | WAITERS, deadline) == FutexWait::TimedOut {
                return self.is_set();
            }
        }
    }
}

/// An event in shared memory: `set`, `clear`, `is_set`, `wait`.
///
/// # Examples
///
/// ```
/// let e = shmproc_sync::Event::new()?;
/// assert!(!e.wait_timeout(std::time::Duration::from_millis(1)));
/// e.set();
/// e.wait();
/// assert!(e.is_set());
/// # Ok::<(), shmproc_core::SegmentError>(())
/// ```
#[cfg(not(loom))]
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    shared: Shared<RawEvent>,
}

#[cfg(not(loom))]
impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

crate::shared::shared_constructors!(Event, "clear event");

#[cfg(not(loom))]
impl Event {
    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.shared.get().is_set()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.shared.get().set::<Futex>();
    }

    /// Whether a waiter has announced that it sleeps on the event (the flag
    /// `set` looks at to decide whether to wake anyone). A snapshot, for
    /// diagnostics and for tests that must know a waiter really sleeps
    /// before they set the event. It stays true after the sleepers left,
    /// until the next `set`.
    pub fn has_waiters(&self) -> bool {
        self.shared.get().has_waiters()
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.shared.get().clear();
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.shared.get().wait::<Futex>(None);
    }

    /// Waits up to `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared.get().wait::<Futex>(Some(Deadline::after(timeout)))
    }
}
