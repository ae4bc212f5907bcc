//! [`Error`]: the one error every error of the library converts into, so `?`
//! works in `main` and in process targets, whatever the operation.

use std::fmt;

/// What kind of failure an [`Error`] is; the detailed error is inside
/// ([`Error::get_ref`], [`Error::downcast_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No room (a non-blocking send or put).
    Full,
    /// Nothing to take (a non-blocking receive or get).
    Empty,
    /// Held by someone else (a non-blocking acquire).
    WouldBlock,
    /// A timed call ran out of time.
    Timeout,
    /// The other side is closed or its processes died.
    Disconnected,
    /// A lock's holder died holding it: the data it guards may be
    /// half-updated.
    OwnerDied,
    /// A barrier was broken (timeout, abort, or a party that died).
    Broken,
    /// Shared state holds what no legal history produces.
    Corrupted,
    /// A message larger than the object carries.
    TooLarge,
    /// A value could not be serialised or deserialised.
    Serialization,
    /// A live process made no progress on a claim it holds.
    Stalled,
    /// A call Python's rules forbid (release of an unlocked lock, a value
    /// out of range, an index out of bounds).
    Usage,
    /// Creating, opening or checking a shared segment.
    Segment,
    /// Starting, joining or signalling a process.
    Process,
    /// Anything else (user errors wrapped with [`Error::other`]).
    Other,
}

/// Any error of the library, with its [`ErrorKind`]. Every error type of
/// `shm` converts into it, so `?` works in functions returning
/// `Result<_, shmproc::Error>`; it is `Send + Sync + 'static`, so it also goes
/// into `Box<dyn Error>`.
pub struct Error {
    kind: ErrorKind,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl Error {
    /// An error of `kind` with `inner` as the detail.
    pub fn new(kind: ErrorKind, inner: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            kind,
            inner: inner.into(),
        }
    }

    /// An [`ErrorKind::Other`] error (a user's own error in a target).
    pub fn other(inner: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::new(ErrorKind::Other, inner)
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The detailed error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// The detailed error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref()
    }

    /// The detailed error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.inner
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("inner", &self.inner)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for Error {
    // The message is the detail's: its source is this error's source, so a
    // report that walks the chain prints each line once.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

macro_rules! into_error {
    ($($ty:ty => $kind:ident),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Self::new(ErrorKind::$kind, e)
            }
        }
    )*};
}

into_error! {
    super::SegmentError => Segment,
    super::ProcessError => Process,
    super::HandleError => Process,
    super::BootstrapError => Process,
    super::ContextError => Usage,
    super::OutOfBounds => Usage,
    std::io::Error => Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails() -> Result<(), Error> {
        Err(super::super::OutOfBounds {
            start: 3,
            end: 4,
            len: 2,
        })?;
        Ok(())
    }

    #[test]
    fn question_mark_converts_and_keeps_the_detail() {
        let e = fails().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert_eq!(e.to_string(), "index out of range: 3..4 in an array of 2");
        assert!(e.downcast_ref::<super::super::OutOfBounds>().is_some());
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().contains("out of range"));
    }
}
