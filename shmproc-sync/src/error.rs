//! The errors of `shmproc-sync`. Each converts into [`shmproc_core::Error`] with its
//! [`shmproc_core::ErrorKind`], so `?` works into `shmproc::Error` and
//! `Box<dyn Error>` alike.

use std::time::Duration;

use shmproc_core::{Error, ErrorKind};

/// A lock's holder died holding it: the data it guards may be half-updated.
///
/// The lock is **not** held after this error: every acquire by anyone gets
/// it again until someone calls the lock's `recover()` and then
/// `mark_consistent()` on the guard it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "lock: its holder (pid {pid}) died holding it, so the data it guards may be half-updated; \
     call recover() and mark_consistent() once repaired"
)]
pub struct OwnerDied {
    /// The pid (or, for an `RLock`, the thread id) of the holder that died.
    pub pid: u32,
}

/// A non-blocking acquire that did not take the lock or permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryAcquireError {
    /// Held by someone else (a lock), or no permit free (a semaphore).
    #[error("try_acquire: held by another holder (expected free)")]
    WouldBlock,
    /// The lock's holder died holding it (see [`OwnerDied`]).
    #[error(transparent)]
    OwnerDied(#[from] OwnerDied),
}

/// A timed acquire that did not take the lock or permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcquireTimeoutError {
    /// Still held (a lock), or no permit free (a semaphore), after waiting this long.
    #[error("acquire_timeout: still held after waiting {0:?}")]
    Timeout(Duration),
    /// The lock's holder died holding it (see [`OwnerDied`]).
    #[error(transparent)]
    OwnerDied(#[from] OwnerDied),
}

/// A barrier wait that did not pass (the barrier is broken for every party
/// until `reset`, as in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    /// Broken by an `abort`, another party's timeout, a party that died, a
    /// panicking action, or damaged shared words.
    #[error("barrier: broken (expected an intact barrier; reset() repairs it)")]
    Broken,
    /// This wait gave up after the given time and broke the barrier.
    #[error("barrier: not all parties arrived within {0:?}; the barrier is broken now")]
    Timeout(Duration),
}

/// A condition wait that could not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Taking the lock back after the wait found its holder dead; the lock
    /// is not held any more (see [`OwnerDied`]).
    #[error(transparent)]
    OwnerDied(#[from] OwnerDied),
    /// Too many processes and threads wait on one condition at once.
    #[error("condition wait: too many waiters (at most {max})")]
    TooManyWaiters {
        /// The limit.
        max: u32,
    },
}

/// A call Python's rules forbid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Released a recursive lock this thread does not hold.
    #[error("RLock release: expected the caller (thread {caller}) to hold it, found holder {holder}")]
    NotOwner {
        /// Thread id of the holder (0: nobody).
        holder: u32,
        /// Thread id of the caller.
        caller: u32,
    },
    /// Released a bounded semaphore past its initial value.
    #[error("BoundedSemaphore release: expected at most {initial} permits, found {found}")]
    TooManyReleases {
        /// Its initial value (the bound).
        initial: u32,
        /// The value the release would have made.
        found: u64,
    },
    /// A value out of the supported range.
    #[error("{what}: expected {bound}, found {got}")]
    OutOfRange {
        /// The object and parameter.
        what: &'static str,
        /// The bound.
        bound: &'static str,
        /// The value given.
        got: u64,
    },
}

macro_rules! into_error {
    ($($ty:ty => |$e:ident| $kind:expr),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from($e: $ty) -> Self {
                Error::new($kind, $e)
            }
        }
    )*};
}

into_error! {
    OwnerDied => |e| ErrorKind::OwnerDied,
    TryAcquireError => |e| match e {
        TryAcquireError::WouldBlock => ErrorKind::WouldBlock,
        TryAcquireError::OwnerDied(_) => ErrorKind::OwnerDied,
    },
    AcquireTimeoutError => |e| match e {
        AcquireTimeoutError::Timeout(_) => ErrorKind::Timeout,
        AcquireTimeoutError::OwnerDied(_) => ErrorKind::OwnerDied,
    },
    BarrierError => |e| match e {
        BarrierError::Broken => ErrorKind::Broken,
        BarrierError::Timeout(_) => ErrorKind::Timeout,
    },
    ConditionError => |e| match e {
        ConditionError::OwnerDied(_) => ErrorKind::OwnerDied,
        ConditionError::TooManyWaiters { .. } => ErrorKind::Usage,
    },
    SyncError => |e| ErrorKind::Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_kind() {
        let owner = OwnerDied { pid: 7 };
        assert_eq!(Error::from(owner).kind(), ErrorKind::OwnerDied);
        assert_eq!(Error::from(TryAcquireError::WouldBlock).kind(), ErrorKind::WouldBlock);
        assert_eq!(Error::from(TryAcquireError::from(owner)).kind(), ErrorKind::OwnerDied);
        let t = AcquireTimeoutError::Timeout(Duration::from_millis(5));
        assert_eq!(Error::from(t).kind(), ErrorKind::Timeout);
        assert!(t.to_string().contains("5ms"), "{t}");
        assert_eq!(Error::from(BarrierError::Broken).kind(), ErrorKind::Broken);
        assert_eq!(
            Error::from(BarrierError::Timeout(Duration::ZERO)).kind(),
            ErrorKind::Timeout
        );
        let e = Error::from(SyncError::NotOwner { holder: 1, caller: 2 });
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(owner.to_string().contains("pid 7"));
    }
}
