//! Python's `multiprocessing.Pipe`: two [`Connection`]s joined by one
//! [byte ring](crate::bytes) per direction.
//!
//! Messages keep their boundaries (empty ones included) and may be of any
//! size: one larger than half a ring is streamed through it in parts. A
//! receiver sees the end of the stream ([`PipeError::Eof`]) once the other
//! end was closed, or its process died, and everything sent before was
//! read. A sender gets [`PipeError::BrokenPipe`] once the other end is
//! closed, or once the ring is full and its reader's process is dead (a
//! sender looks at `/proc` only when it has to wait).
//!
//! Each end of a ring records the process that last used it; that is how a
//! receiver tells its peer died. As in Python, a connection whose other end
//! was never used by another process cannot tell that nobody will write.
//! Unlike Python, dropping a `Connection` does not close it (a child's copy
//! is the same end): call [`Connection::close`], or let the process end.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shmproc_core::sys::Deadline;
use shmproc_core::{Fault, SegmentError};

use crate::bytes::{ByteConsumer, ByteProducer, ByteRing};
use crate::bytes::{Fail, OpenError, relabel};
use crate::queue::de;

/// Bytes of ring per direction unless told otherwise (pages are only used
/// as messages reach them).
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// Why a pipe operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PipeError {
    /// The other end was closed or its process died, and everything it
    /// sent was read (Python's `EOFError`).
    #[error("end of stream: the other end is closed or its process died")]
    Eof,
    /// The other end was closed or its process died: nobody will read
    /// (Python's `BrokenPipeError`).
    #[error("broken pipe: the other end is closed or its process died")]
    BrokenPipe,
    /// This connection was closed.
    #[error("the connection is closed")]
    Closed,
    /// This end of a one-way pipe only sends.
    #[error("the connection is write-only")]
    NotReadable,
    /// This end of a one-way pipe only receives.
    #[error("the connection is read-only")]
    NotWritable,
    /// The message is longer than the buffer given; it was taken off the
    /// pipe and is handed over here (Python's `BufferTooShort`).
    #[error("buffer too short for a message of {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),
    /// The message is longer than the maximum length asked for; it was
    /// taken off the pipe and dropped.
    #[error("message of {len} bytes is longer than the maximum of {max}")]
    TooLong {
        /// The message's length.
        len: usize,
        /// The maximum asked for.
        max: usize,
    },
    /// `offset`/`size` do not lie within the buffer given to `send_bytes`.
    #[error("offset {offset} and size {size} do not fit a buffer of {len} bytes")]
    OutOfRange {
        /// The offset asked for.
        offset: usize,
        /// The size asked for.
        size: usize,
        /// The buffer's length.
        len: usize,
    },
    /// No message now (`try_recv*`).
    #[error("no message in the pipe now")]
    Empty,
    /// No message came in the time given (`recv*_timeout`).
    #[error("no message in the pipe after waiting {0:?}")]
    Timeout(Duration),
    /// The object could not be serialised ([`Fault::Encode`]; nothing was
    /// sent), a message could not be deserialised ([`Fault::Decode`]; it
    /// was taken off the pipe), or the ring's shared state is impossible
    /// ([`Fault::Corrupted`]: a peer wrote over it).
    #[error(transparent)]
    Fault(Fault),
}

impl From<PipeError> for shmproc_core::Error {
    fn from(e: PipeError) -> Self {
        use shmproc_core::ErrorKind;
        let kind = match &e {
            PipeError::Eof | PipeError::BrokenPipe => ErrorKind::Disconnected,
            PipeError::Empty => ErrorKind::Empty,
            PipeError::Timeout(_) => ErrorKind::Timeout,
            PipeError::Closed
            | PipeError::NotReadable
            | PipeError::NotWritable
            | PipeError::BufferTooShort(_)
            | PipeError::TooLong { .. }
            | PipeError::OutOfRange { .. } => ErrorKind::Usage,
            PipeError::Fault(f) => shmproc_core::Error::from(f.clone()).kind(),
        };
        Self::new(kind, e)
    }
}

/// How long a receive may wait for a message to start.
#[derive(Clone, Copy, Debug)]
enum Form {
    Block,
    Try,
    Timed(Duration),
}

impl Form {
    fn deadline(self) -> Option<Deadline> {
        match self {
            Self::Block => None,
            Self::Try => Some(Deadline::after(Duration::ZERO)),
            Self::Timed(d) => Some(Deadline::after(d)),
        }
    }

    fn error(self, e: Fail) -> PipeError {
        match (e, self) {
            (Fail::Fault(f), _) => PipeError::Fault(relabel(*f, "pipe")),
            (Fail::Empty | Fail::Full, Self::Try) => PipeError::Empty,
            (Fail::Empty | Fail::Full, Self::Timed(d)) => PipeError::Timeout(d),
            _ => PipeError::Eof,
        }
    }
}

fn send_error(e: Fail) -> PipeError {
    match e {
        Fail::Fault(f) => PipeError::Fault(relabel(*f, "pipe")),
        _ => PipeError::BrokenPipe,
    }
}

/// Makes a pipe (Python's `multiprocessing.Pipe`).
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Two connected ends. With `duplex`, both send and receive; without,
    /// the first only receives and the second only sends, as in Python.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the rings cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmproc_collections::pipe::{Pipe, PipeError};
    ///
    /// let (mut a, mut b) = Pipe::new(true)?;
    /// a.send(&(1u8, "one"))?;
    /// assert_eq!(b.recv::<(u8, String)>()?, (1, "one".into()));
    /// b.send_bytes(b"")?;
    /// assert_eq!(a.recv_bytes()?, b"");
    /// b.close();
    /// assert_eq!(a.recv_bytes(), Err(PipeError::Eof));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::new_ret_no_self, reason = "Python's Pipe() returns the two ends")]
    pub fn new(duplex: bool) -> Result<(Connection, Connection), SegmentError> {
        Self::with_capacity(duplex, DEFAULT_CAPACITY)
    }

    /// As [`Pipe::new`], in named segments (`name`, and `name.back` for
    /// the second direction of a duplex pipe), so that any process (not
    /// only our children) can take an end with [`Connection::open`]. The
    /// ends returned are taken only when first used. The names stay until
    /// [`Pipe::unlink`].
    ///
    /// # Errors
    ///
    /// As for [`Pipe::new`], and [`SegmentError::InvalidName`],
    /// [`SegmentError::AlreadyExists`].
    pub fn create_named(name: &str, duplex: bool) -> Result<(Connection, Connection), SegmentError> {
        Self::make(Some(name), duplex, DEFAULT_CAPACITY)
    }

    /// Removes a named pipe's names (the rings live on while mapped).
    ///
    /// # Errors
    ///
    /// As for [`shmproc_core::Segment::unlink`] of the first ring.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        shmproc_core::Segment::unlink(name)?;
        // A one-way pipe has no second ring.
        let _ = shmproc_core::Segment::unlink(&back_name(name));
        Ok(())
    }

    /// As [`Pipe::new`], with rings of `bytes` bytes per direction.
    ///
    /// # Errors
    ///
    /// As for [`Pipe::new`], and for a zero or too large `bytes`.
    pub fn with_capacity(duplex: bool, bytes: usize) -> Result<(Connection, Connection), SegmentError> {
        Self::make(None, duplex, bytes)
    }

    fn make(name: Option<&str>, duplex: bool, bytes: usize) -> Result<(Connection, Connection), SegmentError> {
        shmproc_core::sys::membarrier_register();
        let one = Arc::new(ByteRing::create(name, bytes)?);
        let (tx1, rx2) = (ByteProducer::new(Arc::clone(&one)), ByteConsumer::new(one));
        if !duplex {
            return Ok((Connection::new(None, Some(rx2)), Connection::new(Some(tx1), None)));
        }
        let back = name.map(back_name);
        let two = match ByteRing::create(back.as_deref(), bytes) {
            Ok(two) => Arc::new(two),
            Err(e) => {
                if let Some(name) = name {
                    // Leave no half-made pipe behind.
                    let _ = shmproc_core::Segment::unlink(name);
                }
                return Err(e);
            }
        };
        let (tx2, rx1) = (ByteProducer::new(Arc::clone(&two)), ByteConsumer::new(two));
        Ok((
            Connection::new(Some(tx1), Some(rx1)),
            Connection::new(Some(tx2), Some(rx2)),
        ))
    }
}

/// Which end of a named pipe [`Connection::open`] takes: the first or the
/// second of the pair [`Pipe::create_named`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEnd {
    /// The first connection (the receiving one of a one-way pipe).
    First,
    /// The second connection (the sending one of a one-way pipe).
    Second,
}

/// The name of a named pipe's second ring (second end to first).
fn back_name(name: &str) -> String {
    format!("{name}.back")
}

/// One end of a [`Pipe`]. Pass it to a child process as an argument.
#[derive(Serialize, Deserialize)]
pub struct Connection {
    tx: Option<ByteProducer>,
    rx: Option<ByteConsumer>,
    #[serde(skip)]
    closed: bool,
    #[serde(skip)]
    buf: Vec<u8>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.rx.is_some())
            .field("writable", &self.tx.is_some())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(tx: Option<ByteProducer>, rx: Option<ByteConsumer>) -> Self {
        Self {
            tx,
            rx,
            closed: false,
            buf: Vec::new(),
        }
    }

    /// Takes `end` of the pipe named `name` (made by
    /// [`Pipe::create_named`]) for this process: its ring ends, each
    /// refused while a live process holds it.
    ///
    /// # Errors
    ///
    /// [`OpenError::Held`] when a live process holds this end,
    /// [`OpenError::Segment`] when there is no such pipe (or another
    /// object by that name: [`SegmentError::TypeMismatch`], naming both).
    pub fn open(name: &str, end: PipeEnd) -> Result<Self, OpenError> {
        let back = back_name(name);
        let duplex = match shmproc_core::Segment::open_named(&back, None) {
            Ok(_) => true,
            Err(SegmentError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(match (end, duplex) {
            (PipeEnd::First, false) => Self::new(None, Some(ByteConsumer::open(name)?)),
            (PipeEnd::Second, false) => Self::new(Some(ByteProducer::open(name)?), None),
            (PipeEnd::First, true) => Self::new(Some(ByteProducer::open(name)?), Some(ByteConsumer::open(&back)?)),
            (PipeEnd::Second, true) => Self::new(Some(ByteProducer::open(&back)?), Some(ByteConsumer::open(name)?)),
        })
    }

    /// Names this process as the user of both of this connection's ring
    /// ends, so that the peer can tell if it dies.
    #[inline]
    fn claim(&mut self) {
        if let Some(tx) = &mut self.tx {
            tx.claim();
        }
        if let Some(rx) = &mut self.rx {
            rx.claim();
        }
    }

    fn writer(&mut self) -> Result<&mut ByteProducer, PipeError> {
        if self.closed {
            return Err(PipeError::Closed);
        }
        self.claim();
        self.tx.as_mut().ok_or(PipeError::NotWritable)
    }

    fn reader(&mut self) -> Result<&mut ByteConsumer, PipeError> {
        if self.closed {
            return Err(PipeError::Closed);
        }
        self.claim();
        self.rx.as_mut().ok_or(PipeError::NotReadable)
    }

    /// Sends a serialisable object.
    ///
    /// # Errors
    ///
    /// [`PipeError::Fault`] with [`Fault::Encode`] (nothing sent), [`PipeError::BrokenPipe`],
    /// [`PipeError::Closed`], [`PipeError::NotWritable`].
    pub fn send<T: Serialize + ?Sized>(&mut self, obj: &T) -> Result<(), PipeError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        match postcard::to_extend(obj, buf) {
            Ok(bytes) => {
                let sent = self.send_bytes(&bytes);
                self.buf = bytes;
                sent
            }
            Err(e) => Err(PipeError::Fault(Fault::Encode(e.to_string()))),
        }
    }

    /// Receives an object sent with [`Connection::send`], waiting as long
    /// as needed.
    ///
    /// # Errors
    ///
    /// [`PipeError::Eof`], [`PipeError::Fault`] ([`Fault::Decode`]: that
    /// message is gone, or [`Fault::Corrupted`]), [`PipeError::Closed`],
    /// [`PipeError::NotReadable`].
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, PipeError> {
        self.recv_form(Form::Block)
    }

    /// Receives an object if a message is there now, without waiting for
    /// one to start.
    ///
    /// # Errors
    ///
    /// [`PipeError::Empty`], as for [`Connection::recv`] otherwise.
    pub fn try_recv<T: DeserializeOwned>(&mut self) -> Result<T, PipeError> {
        self.recv_form(Form::Try)
    }

    /// Receives an object, waiting up to `timeout` for a message to start.
    ///
    /// # Errors
    ///
    /// [`PipeError::Timeout`], as for [`Connection::recv`] otherwise.
    pub fn recv_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, PipeError> {
        self.recv_form(Form::Timed(timeout))
    }

    fn recv_form<T: DeserializeOwned>(&mut self, form: Form) -> Result<T, PipeError> {
        let mut buf = std::mem::take(&mut self.buf);
        let got = self
            .reader()
            .and_then(|rx| rx.recv_until(&mut buf, form.deadline()).map_err(|e| form.error(e)));
        let result = got.and_then(|()| de(&buf).map_err(PipeError::Fault));
        self.buf = buf;
        result
    }

    /// Sends `buf` as one message.
    ///
    /// # Errors
    ///
    /// [`PipeError::BrokenPipe`], [`PipeError::Closed`],
    /// [`PipeError::NotWritable`], [`PipeError::Fault`].
    pub fn send_bytes(&mut self, buf: &[u8]) -> Result<(), PipeError> {
        self.writer()?.send_until(buf, None).map_err(send_error)
    }

    /// Sends `size` bytes of `buf` from `offset` (all the rest with `None`)
    /// as one message.
    ///
    /// # Errors
    ///
    /// [`PipeError::OutOfRange`] when the range does not lie in `buf`, as
    /// for [`Connection::send_bytes`] otherwise.
    pub fn send_bytes_range(&mut self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<(), PipeError> {
        let size_or_rest = size.unwrap_or(buf.len().saturating_sub(offset));
        let part = offset
            .checked_add(size_or_rest)
            .and_then(|end| buf.get(offset..end))
            .ok_or(PipeError::OutOfRange {
                offset,
                size: size_or_rest,
                len: buf.len(),
            })?;
        self.send_bytes(part)
    }

    /// Receives one message's bytes, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`PipeError::Eof`], [`PipeError::Closed`], [`PipeError::NotReadable`],
    /// [`PipeError::Fault`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, PipeError> {
        self.recv_bytes_form(Form::Block)
    }

    /// Receives one message's bytes if one is there now.
    ///
    /// # Errors
    ///
    /// [`PipeError::Empty`], as for [`Connection::recv_bytes`] otherwise.
    pub fn try_recv_bytes(&mut self) -> Result<Vec<u8>, PipeError> {
        self.recv_bytes_form(Form::Try)
    }

    /// Receives one message's bytes, waiting up to `timeout` for it to
    /// start.
    ///
    /// # Errors
    ///
    /// [`PipeError::Timeout`], as for [`Connection::recv_bytes`] otherwise.
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, PipeError> {
        self.recv_bytes_form(Form::Timed(timeout))
    }

    fn recv_bytes_form(&mut self, form: Form) -> Result<Vec<u8>, PipeError> {
        let mut out = Vec::new();
        self.reader()?
            .recv_until(&mut out, form.deadline())
            .map_err(|e| form.error(e))?;
        Ok(out)
    }

    /// Receives one message of at most `maxlength` bytes.
    ///
    /// # Errors
    ///
    /// [`PipeError::TooLong`] for a longer message (it is dropped), as for
    /// [`Connection::recv_bytes`] otherwise.
    pub fn recv_bytes_max(&mut self, maxlength: usize) -> Result<Vec<u8>, PipeError> {
        let out = self.recv_bytes()?;
        if out.len() > maxlength {
            return Err(PipeError::TooLong {
                len: out.len(),
                max: maxlength,
            });
        }
        Ok(out)
    }

    /// Receives one message into `buf` from `offset`; returns its length.
    ///
    /// # Errors
    ///
    /// [`PipeError::BufferTooShort`] with the message when it does not
    /// fit, [`PipeError::OutOfRange`] for an offset past the end of `buf`,
    /// as for [`Connection::recv_bytes`] otherwise.
    pub fn recv_bytes_into(&mut self, buf: &mut [u8], offset: usize) -> Result<usize, PipeError> {
        let len = buf.len();
        let room = buf
            .get_mut(offset..)
            .ok_or(PipeError::OutOfRange { offset, size: 0, len })?;
        let mut msg = std::mem::take(&mut self.buf);
        let got = self
            .reader()
            .and_then(|rx| rx.recv_until(&mut msg, None).map_err(|e| Form::Block.error(e)));
        let result = got.and_then(|()| match room.get_mut(..msg.len()) {
            Some(dst) => {
                dst.copy_from_slice(&msg);
                Ok(msg.len())
            }
            // Handed over whole (the connection's buffer starts afresh).
            None => Err(PipeError::BufferTooShort(std::mem::take(&mut msg))),
        });
        self.buf = msg;
        result
    }

    /// Whether a message can be received now, without waiting (Python's
    /// `poll()`). True also when the other end is closed or dead, so that
    /// the next receive reports it. Consumes nothing.
    ///
    /// # Errors
    ///
    /// [`PipeError::Closed`], [`PipeError::NotReadable`].
    pub fn poll(&mut self) -> Result<bool, PipeError> {
        Ok(self.reader()?.readable(Some(Deadline::after(Duration::ZERO))))
    }

    /// As [`Connection::poll`], waiting up to `timeout` for a message
    /// (Python's `poll(timeout)`).
    ///
    /// # Errors
    ///
    /// As for [`Connection::poll`].
    pub fn poll_timeout(&mut self, timeout: Duration) -> Result<bool, PipeError> {
        Ok(self.reader()?.readable(Some(Deadline::after(timeout))))
    }

    /// Waits as long as needed for a message (or the end of the stream);
    /// Python's `poll(None)`.
    ///
    /// # Errors
    ///
    /// As for [`Connection::poll`].
    pub fn wait_readable(&mut self) -> Result<(), PipeError> {
        self.reader()?.readable(None);
        Ok(())
    }

    /// Closes this connection: the other end reads what was sent, then
    /// gets [`PipeError::Eof`]; its sends fail with
    /// [`PipeError::BrokenPipe`]. Later calls here fail with
    /// [`PipeError::Closed`].
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(tx) = &mut self.tx {
            tx.close();
        }
        if let Some(rx) = &mut self.rx {
            rx.close();
        }
    }

    /// Whether [`Connection::close`] was called on this handle.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Whether this end receives.
    pub fn readable(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether this end sends.
    pub fn writable(&self) -> bool {
        self.tx.is_some()
    }
}

#[cfg(test)]
mod tests;
