//! The errors of `shm-sync`.

use std::fmt;

/// The lock was acquired, but its previous holder died while holding it:
/// the data it guards may be half-updated. The guard is inside; repair the
/// data, then use it (as `std`'s `PoisonError`).
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        Self { guard }
    }

    /// The guard of the lock, which is now held.
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn guard(&self) -> &G {
        &self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied { .. }")
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous holder of the lock died while holding it; the data it guards may be inconsistent")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// The result of a blocking acquire.
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// A non-blocking or timed acquire did not succeed cleanly.
pub enum TryLockError<G> {
    /// The lock is held by someone else (non-blocking), or the timeout passed.
    WouldBlock,
    /// Acquired, from a holder that died.
    OwnerDied(OwnerDied<G>),
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("WouldBlock"),
            Self::OwnerDied(_) => f.write_str("OwnerDied { .. }"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("the lock is held by another holder"),
            Self::OwnerDied(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

/// The result of a non-blocking or timed acquire.
pub type TryLockResult<G> = Result<G, TryLockError<G>>;

/// A release or a wait that Python's rules forbid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Released a lock that is not locked.
    #[error("release of an unlocked lock")]
    NotLocked,
    /// Released (or waited on a condition over) a recursive lock this
    /// thread does not hold.
    #[error("cannot release an RLock held by another thread (holder {holder}, caller {caller})")]
    NotOwner {
        /// Thread id of the holder (0: nobody).
        holder: u32,
        /// Thread id of the caller.
        caller: u32,
    },
    /// Released a bounded semaphore past its initial value.
    #[error("bounded semaphore released too many times (initial value {initial})")]
    TooManyReleases {
        /// Its initial value.
        initial: u32,
    },
    /// Waited on or notified a condition without holding its lock.
    #[error("cannot {what} on an un-acquired lock")]
    LockNotHeld {
        /// `wait` or `notify`.
        what: &'static str,
    },
    /// A barrier is broken (a timeout, an abort, or a party that died).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A value out of the supported range.
    #[error("{what} must be {bound}, got {got}")]
    OutOfRange {
        /// The parameter.
        what: &'static str,
        /// The bound.
        bound: &'static str,
        /// The value given.
        got: u64,
    },
    /// The lock is held now, but its previous holder died holding it (from
    /// `Condition::wait`, which re-acquires the lock before returning).
    #[error("the lock is held again, but its previous holder died holding it; the data may be inconsistent")]
    LockOwnerDied,
    /// Too many processes wait on one condition at once.
    #[error("too many waiters on one condition (at most {max})")]
    TooManyWaiters {
        /// The limit.
        max: u32,
    },
}
