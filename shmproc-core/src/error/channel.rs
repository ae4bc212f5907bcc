//! The errors of every channel and queue: one family, in crossbeam's shape,
//! for the rings (`spsc`, `mpmc`, `bytes`, `duplex`) and the queues.
//!
//! Each operation form has its own enum, so the type says what can happen:
//! a blocking send cannot be `Full`, a non-blocking one cannot time out. The
//! send errors hand the value back (`into_inner`); nothing is lost.
//!
//! | form            | send side              | receive side          |
//! |-----------------|------------------------|-----------------------|
//! | blocking        | [`SendError<T>`]       | [`RecvError`]         |
//! | `try_*`         | [`TrySendError<T>`]    | [`TryRecvError`]      |
//! | `*_timeout`     | [`SendTimeoutError<T>`]| [`RecvTimeoutError`]  |

use std::fmt;
use std::time::Duration;

/// A failure that is neither full, empty, a timeout nor a disconnection: a
/// message that does not fit, one that cannot be (de)serialised, or shared
/// state that a peer wrote over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// A shared word holds a value no legal history produces: a peer wrote
    /// over it. Which object and word, what a legal state allows, and what
    /// was found.
    #[error("corrupted {object}: {what}: expected {expected}, found {found}")]
    Corrupted {
        /// The object (`"spsc ring"`, `"queue"`, ...).
        object: &'static str,
        /// The word or field.
        what: &'static str,
        /// What a legal state allows there.
        expected: String,
        /// What it holds.
        found: String,
    },
    /// The message is larger than the object can carry.
    #[error("a message of {len} bytes does not fit: at most {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The most the object carries.
        max: usize,
    },
    /// The item could not be serialised; nothing was sent.
    #[error("the item cannot be serialised: {0}")]
    Encode(String),
    /// A message could not be deserialised into the item type; it was taken
    /// off the channel.
    #[error("a message cannot be deserialised: {0}")]
    Decode(String),
    /// A live process holds a slot claim and made no progress.
    #[error("process {pid} holds a claim on the {object} and made no progress for {waited:?}")]
    Stalled {
        /// The object.
        object: &'static str,
        /// The claimant.
        pid: u32,
        /// How long it was waited for.
        waited: Duration,
    },
}

impl Fault {
    /// A [`Fault::Corrupted`] from displayable parts.
    pub fn corrupted(
        object: &'static str,
        what: &'static str,
        expected: impl fmt::Display,
        found: impl fmt::Display,
    ) -> Self {
        Self::Corrupted {
            object,
            what,
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}

/// A blocking send (or `put`) failed; the value is handed back.
#[non_exhaustive]
pub enum SendError<T> {
    /// The receiving side is closed or every process on it died.
    Disconnected(T),
    /// See [`Fault`].
    Fault(T, Fault),
}

/// A non-blocking send (`try_send`, `try_put`) failed; the value is handed back.
#[non_exhaustive]
pub enum TrySendError<T> {
    /// No room now.
    Full(T),
    /// The receiving side is closed or every process on it died.
    Disconnected(T),
    /// See [`Fault`].
    Fault(T, Fault),
}

/// A timed send (`send_timeout`, `put_timeout`) failed; the value is handed back.
#[non_exhaustive]
pub enum SendTimeoutError<T> {
    /// Still no room when the timeout (given here) ran out.
    Timeout(T, Duration),
    /// The receiving side is closed or every process on it died.
    Disconnected(T),
    /// See [`Fault`].
    Fault(T, Fault),
}

/// A blocking receive (`recv`, `get`) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The sending side is closed or every process on it died, and
    /// everything it sent was received.
    #[error("receiving on a channel whose senders are closed or dead, and nothing is left")]
    Disconnected,
    /// See [`Fault`].
    #[error(transparent)]
    Fault(Fault),
}

/// A non-blocking receive (`try_recv`, `try_get`) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing to receive now.
    #[error("receiving on an empty channel")]
    Empty,
    /// The sending side is closed or every process on it died, and
    /// everything it sent was received.
    #[error("receiving on a channel whose senders are closed or dead, and nothing is left")]
    Disconnected,
    /// See [`Fault`].
    #[error(transparent)]
    Fault(Fault),
}

/// A timed receive (`recv_timeout`, `get_timeout`) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// Still nothing when the timeout (given here) ran out.
    #[error("timed out after {0:?} waiting to receive on an empty channel")]
    Timeout(Duration),
    /// The sending side is closed or every process on it died, and
    /// everything it sent was received.
    #[error("receiving on a channel whose senders are closed or dead, and nothing is left")]
    Disconnected,
    /// See [`Fault`].
    #[error(transparent)]
    Fault(Fault),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Disconnected(v) | Self::Fault(v, _) => v,
        }
    }

    /// Whether the receiving side is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }

    /// The fault, if that is why.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Self::Fault(_, f) => Some(f),
            Self::Disconnected(_) => None,
        }
    }

    /// The same error without the value (to keep or convert it when `T` is
    /// not `'static`).
    pub fn without_value(self) -> SendError<()> {
        match self {
            Self::Disconnected(_) => SendError::Disconnected(()),
            Self::Fault(_, f) => SendError::Fault((), f),
        }
    }

    fn kind(&self) -> crate::ErrorKind {
        match self {
            Self::Disconnected(_) => crate::ErrorKind::Disconnected,
            Self::Fault(_, f) => f.kind(),
        }
    }
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Disconnected(v) | Self::Fault(v, _) => v,
        }
    }

    /// Whether there was no room.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the receiving side is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }

    /// The fault, if that is why.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Self::Fault(_, f) => Some(f),
            _ => None,
        }
    }

    /// The same error without the value.
    pub fn without_value(self) -> TrySendError<()> {
        match self {
            Self::Full(_) => TrySendError::Full(()),
            Self::Disconnected(_) => TrySendError::Disconnected(()),
            Self::Fault(_, f) => TrySendError::Fault((), f),
        }
    }

    fn kind(&self) -> crate::ErrorKind {
        match self {
            Self::Full(_) => crate::ErrorKind::Full,
            Self::Disconnected(_) => crate::ErrorKind::Disconnected,
            Self::Fault(_, f) => f.kind(),
        }
    }
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Timeout(v, _) | Self::Disconnected(v) | Self::Fault(v, _) => v,
        }
    }

    /// Whether the timeout ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(..))
    }

    /// Whether the receiving side is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }

    /// The fault, if that is why.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Self::Fault(_, f) => Some(f),
            _ => None,
        }
    }

    /// The same error without the value.
    pub fn without_value(self) -> SendTimeoutError<()> {
        match self {
            Self::Timeout(_, d) => SendTimeoutError::Timeout((), d),
            Self::Disconnected(_) => SendTimeoutError::Disconnected(()),
            Self::Fault(_, f) => SendTimeoutError::Fault((), f),
        }
    }

    fn kind(&self) -> crate::ErrorKind {
        match self {
            Self::Timeout(..) => crate::ErrorKind::Timeout,
            Self::Disconnected(_) => crate::ErrorKind::Disconnected,
            Self::Fault(_, f) => f.kind(),
        }
    }
}

const DISCONNECTED: &str = "sending on a channel whose receivers are closed or dead";

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected(_) => f.write_str(DISCONNECTED),
            Self::Fault(_, fault) => fault.fmt(f),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("sending on a full channel"),
            Self::Disconnected(_) => f.write_str(DISCONNECTED),
            Self::Fault(_, fault) => fault.fmt(f),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_, d) => write!(f, "timed out after {d:?} waiting to send on a full channel"),
            Self::Disconnected(_) => f.write_str(DISCONNECTED),
            Self::Fault(_, fault) => fault.fmt(f),
        }
    }
}

macro_rules! debug_and_error {
    ($($name:ident),*) => {$(
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // The value is left out: `T` need not be `Debug`.
                match self.fault() {
                    Some(fault) => f.debug_tuple(concat!(stringify!($name), "::Fault")).field(fault).finish(),
                    None => write!(f, "{}({})", stringify!($name), self),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.fault().map(|f| f as _)
            }
        }

        impl<T> From<$name<T>> for crate::Error {
            fn from(e: $name<T>) -> Self {
                let kind = e.kind();
                Self::new(kind, e.without_value())
            }
        }
    )*};
}

debug_and_error!(SendError, TrySendError, SendTimeoutError);

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(v) => Self::Disconnected(v),
            SendError::Fault(v, f) => Self::Fault(v, f),
        }
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(v) => Self::Disconnected(v),
            SendError::Fault(v, f) => Self::Fault(v, f),
        }
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::Fault(f) => Self::Fault(f),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::Fault(f) => Self::Fault(f),
        }
    }
}

impl Fault {
    pub(crate) fn kind(&self) -> crate::ErrorKind {
        match self {
            Self::Corrupted { .. } => crate::ErrorKind::Corrupted,
            Self::TooLarge { .. } => crate::ErrorKind::TooLarge,
            Self::Encode(_) | Self::Decode(_) => crate::ErrorKind::Serialization,
            Self::Stalled { .. } => crate::ErrorKind::Stalled,
        }
    }
}

impl From<Fault> for crate::Error {
    fn from(e: Fault) -> Self {
        Self::new(e.kind(), e)
    }
}

impl From<RecvError> for crate::Error {
    fn from(e: RecvError) -> Self {
        let kind = match &e {
            RecvError::Disconnected => crate::ErrorKind::Disconnected,
            RecvError::Fault(f) => f.kind(),
        };
        Self::new(kind, e)
    }
}

impl From<TryRecvError> for crate::Error {
    fn from(e: TryRecvError) -> Self {
        let kind = match &e {
            TryRecvError::Empty => crate::ErrorKind::Empty,
            TryRecvError::Disconnected => crate::ErrorKind::Disconnected,
            TryRecvError::Fault(f) => f.kind(),
        };
        Self::new(kind, e)
    }
}

impl From<RecvTimeoutError> for crate::Error {
    fn from(e: RecvTimeoutError) -> Self {
        let kind = match &e {
            RecvTimeoutError::Timeout(_) => crate::ErrorKind::Timeout,
            RecvTimeoutError::Disconnected => crate::ErrorKind::Disconnected,
            RecvTimeoutError::Fault(f) => f.kind(),
        };
        Self::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_and_messages_say_why() {
        let e = SendTimeoutError::Timeout(String::from("x"), Duration::from_millis(5));
        assert!(e.to_string().contains("5ms"), "{e}");
        assert!(e.is_timeout());
        assert_eq!(e.into_inner(), "x");
        let e = TrySendError::Fault(7_u32, Fault::TooLarge { len: 10, max: 4 });
        assert_eq!(e.to_string(), "a message of 10 bytes does not fit: at most 4 bytes");
        assert_eq!(format!("{e:?}"), "TrySendError::Fault(TooLarge { len: 10, max: 4 })");
        let err: crate::Error = e.into();
        assert_eq!(err.kind(), crate::ErrorKind::TooLarge);
        let err: crate::Error = TrySendError::Full(1_u8).into();
        assert_eq!(err.kind(), crate::ErrorKind::Full);
        assert_eq!(
            format!("{:?}", TrySendError::Full(1_u8)),
            "TrySendError(sending on a full channel)"
        );
        let f = Fault::corrupted("spsc ring", "tail", "at most 64 ahead of head", 99);
        assert_eq!(
            f.to_string(),
            "corrupted spsc ring: tail: expected at most 64 ahead of head, found 99"
        );
    }
}
