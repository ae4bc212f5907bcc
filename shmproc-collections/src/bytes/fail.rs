//! Why a ring operation stopped, inside the crate, and its translation into
//! shmproc-core's error family at each public form (blocking, `try_*`,
//! `*_timeout`).

use std::time::Duration;

use shmproc_core::{Fault, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};

/// Why a byte ring or queue operation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fail {
    /// No room now, or not before the deadline.
    Full,
    /// Nothing to take now, or not before the deadline.
    Empty,
    /// The other side closed or died (a closed queue too).
    Disconnected,
    /// Anything else: corruption, too large, (de)serialisation. Boxed, so
    /// that the results of the hot paths stay two words.
    Fault(Box<Fault>),
}

// The hot paths return `Result<_, Fail>`: keep it two words.
const _: () = assert!(size_of::<Fail>() <= 16);

impl Fail {
    /// A [`Fault::Corrupted`] of `object`.
    #[cold]
    pub(crate) fn corrupted(
        object: &'static str,
        what: &'static str,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        Self::fault(Fault::corrupted(object, what, expected, found))
    }

    /// A [`Fail::Fault`].
    #[cold]
    pub(crate) fn fault(f: Fault) -> Self {
        Self::Fault(Box::new(f))
    }

    /// The same, reported as `object` (a queue's ring says "queue").
    pub(crate) fn of(self, object: &'static str) -> Self {
        match self {
            Self::Fault(f) => Self::fault(relabel(*f, object)),
            other => other,
        }
    }

    /// For a blocking send: `Full` and `Empty` are not produced without a
    /// deadline, and read as a disconnection if they ever were.
    pub(crate) fn send<T>(self, v: T) -> SendError<T> {
        match self {
            Self::Fault(f) => SendError::Fault(v, *f),
            Self::Full | Self::Empty | Self::Disconnected => SendError::Disconnected(v),
        }
    }

    /// For a `try_*` send.
    pub(crate) fn try_send<T>(self, v: T) -> TrySendError<T> {
        match self {
            Self::Full | Self::Empty => TrySendError::Full(v),
            Self::Disconnected => TrySendError::Disconnected(v),
            Self::Fault(f) => TrySendError::Fault(v, *f),
        }
    }

    /// For a timed send that waited `d`.
    pub(crate) fn send_timeout<T>(self, v: T, d: Duration) -> SendTimeoutError<T> {
        match self {
            Self::Full | Self::Empty => SendTimeoutError::Timeout(v, d),
            Self::Disconnected => SendTimeoutError::Disconnected(v),
            Self::Fault(f) => SendTimeoutError::Fault(v, *f),
        }
    }

    /// For a blocking receive (see [`Self::send`]).
    pub(crate) fn recv(self) -> RecvError {
        match self {
            Self::Fault(f) => RecvError::Fault(*f),
            Self::Full | Self::Empty | Self::Disconnected => RecvError::Disconnected,
        }
    }

    /// For a `try_*` receive.
    pub(crate) fn try_recv(self) -> TryRecvError {
        match self {
            Self::Full | Self::Empty => TryRecvError::Empty,
            Self::Disconnected => TryRecvError::Disconnected,
            Self::Fault(f) => TryRecvError::Fault(*f),
        }
    }

    /// For a timed receive that waited `d`.
    pub(crate) fn recv_timeout(self, d: Duration) -> RecvTimeoutError {
        match self {
            Self::Full | Self::Empty => RecvTimeoutError::Timeout(d),
            Self::Disconnected => RecvTimeoutError::Disconnected,
            Self::Fault(f) => RecvTimeoutError::Fault(*f),
        }
    }
}

/// A [`Fault::Corrupted`] reported as `object`'s; other faults unchanged.
pub(crate) fn relabel(f: Fault, object: &'static str) -> Fault {
    match f {
        Fault::Corrupted {
            what, expected, found, ..
        } => Fault::Corrupted {
            object,
            what,
            expected,
            found,
        },
        other => other,
    }
}
