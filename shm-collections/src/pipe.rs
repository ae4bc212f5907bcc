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
use shm_core::SegmentError;

use crate::bytes::{ByteConsumer, ByteProducer, ByteRing};
use crate::queue::{QueueError, de};
use crate::ring::RingError;

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
    /// The object could not be serialised; nothing was sent.
    #[error("the object could not be serialised: {0}")]
    Serialize(String),
    /// The message could not be deserialised; it was taken off the pipe.
    #[error("a message could not be deserialised: {0}")]
    Deserialize(String),
    /// The ring's shared state is impossible: a peer wrote over it.
    #[error("corrupted pipe: {0}")]
    Corrupted(&'static str),
}

fn recv_error(e: RingError) -> PipeError {
    match e {
        RingError::Corrupted(what) => PipeError::Corrupted(what),
        _ => PipeError::Eof,
    }
}

fn send_error(e: RingError) -> PipeError {
    match e {
        RingError::Corrupted(what) => PipeError::Corrupted(what),
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
    /// use shm_collections::pipe::{Pipe, PipeError};
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

    /// As [`Pipe::new`], with rings of `bytes` bytes per direction.
    ///
    /// # Errors
    ///
    /// As for [`Pipe::new`], and for a zero or too large `bytes`.
    pub fn with_capacity(duplex: bool, bytes: usize) -> Result<(Connection, Connection), SegmentError> {
        shm_core::sys::membarrier_register();
        let one = Arc::new(ByteRing::create(bytes)?);
        let (tx1, rx2) = (ByteProducer::new(Arc::clone(&one)), ByteConsumer::new(one));
        if !duplex {
            return Ok((Connection::new(None, Some(rx2)), Connection::new(Some(tx1), None)));
        }
        let two = Arc::new(ByteRing::create(bytes)?);
        let (tx2, rx1) = (ByteProducer::new(Arc::clone(&two)), ByteConsumer::new(two));
        Ok((
            Connection::new(Some(tx1), Some(rx1)),
            Connection::new(Some(tx2), Some(rx2)),
        ))
    }
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
    /// [`PipeError::Serialize`] (nothing sent), [`PipeError::BrokenPipe`],
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
            Err(e) => Err(PipeError::Serialize(e.to_string())),
        }
    }

    /// Receives an object sent with [`Connection::send`], waiting as long
    /// as needed.
    ///
    /// # Errors
    ///
    /// [`PipeError::Eof`], [`PipeError::Deserialize`] (that message is
    /// gone), [`PipeError::Closed`], [`PipeError::NotReadable`],
    /// [`PipeError::Corrupted`].
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, PipeError> {
        let mut buf = std::mem::take(&mut self.buf);
        let got = self.reader().and_then(|rx| rx.recv(&mut buf).map_err(recv_error));
        let result = got.and_then(|()| {
            de(&buf).map_err(|e| match e {
                QueueError::Deserialize(what) => PipeError::Deserialize(what),
                _ => PipeError::Deserialize(e.to_string()),
            })
        });
        self.buf = buf;
        result
    }

    /// Sends `buf` as one message.
    ///
    /// # Errors
    ///
    /// [`PipeError::BrokenPipe`], [`PipeError::Closed`],
    /// [`PipeError::NotWritable`], [`PipeError::Corrupted`].
    pub fn send_bytes(&mut self, buf: &[u8]) -> Result<(), PipeError> {
        self.writer()?.send(buf).map_err(send_error)
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
    /// [`PipeError::Corrupted`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, PipeError> {
        let mut out = Vec::new();
        self.reader()?.recv(&mut out).map_err(recv_error)?;
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
        let got = self.reader().and_then(|rx| rx.recv(&mut msg).map_err(recv_error));
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

    /// Whether a message can be received now, waiting up to `timeout`
    /// (forever with `None`; Python's default is `Some(Duration::ZERO)`).
    /// True also when the other end is closed or dead, so that the next
    /// receive reports it. Consumes nothing.
    ///
    /// # Errors
    ///
    /// [`PipeError::Closed`], [`PipeError::NotReadable`].
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool, PipeError> {
        Ok(self.reader()?.poll(timeout))
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
#[allow(clippy::cast_possible_truncation, reason = "test byte patterns")]
mod tests {
    use super::*;

    #[test]
    fn duplex_both_ways_with_boundaries() {
        let (mut a, mut b) = Pipe::with_capacity(true, 256).expect("pipe");
        a.send_bytes(b"one").expect("send");
        a.send_bytes(b"").expect("empty");
        a.send_bytes_range(b"0123456789", 2, Some(3)).expect("range");
        a.send_bytes_range(b"0123456789", 7, None).expect("rest");
        assert!(matches!(
            a.send_bytes_range(b"abc", 2, Some(2)),
            Err(PipeError::OutOfRange { .. })
        ));
        assert!(matches!(
            a.send_bytes_range(b"abc", 4, None),
            Err(PipeError::OutOfRange { .. })
        ));
        assert_eq!(b.recv_bytes().expect("one"), b"one");
        assert_eq!(b.recv_bytes().expect("empty"), b"");
        assert_eq!(b.recv_bytes().expect("range"), b"234");
        assert_eq!(b.recv_bytes().expect("rest"), b"789");
        b.send(&vec![1u16, 2, 3]).expect("send");
        assert_eq!(a.recv::<Vec<u16>>().expect("recv"), [1, 2, 3]);
    }

    #[test]
    fn one_way_pipes_refuse_the_other_direction() {
        let (mut r, mut w) = Pipe::new(false).expect("pipe");
        assert!(r.readable() && !r.writable() && w.writable() && !w.readable());
        assert_eq!(r.send_bytes(b"x"), Err(PipeError::NotWritable));
        assert_eq!(w.recv_bytes(), Err(PipeError::NotReadable));
        assert_eq!(w.poll(None), Err(PipeError::NotReadable));
        w.send_bytes(b"x").expect("send");
        assert_eq!(r.recv_bytes().expect("recv"), b"x");
    }

    #[test]
    fn short_buffers_long_messages_and_poll() {
        let (mut a, mut b) = Pipe::new(true).expect("pipe");
        assert_eq!(b.poll(Some(Duration::ZERO)), Ok(false));
        a.send_bytes(b"hello world").expect("send");
        assert_eq!(b.poll(Some(Duration::ZERO)), Ok(true));
        let mut small = [0u8; 4];
        assert_eq!(
            b.recv_bytes_into(&mut small, 0),
            Err(PipeError::BufferTooShort(b"hello world".to_vec())),
            "the message is handed over"
        );
        a.send_bytes(b"hi").expect("send");
        assert_eq!(b.recv_bytes_into(&mut small, 2), Ok(2));
        assert_eq!(&small[2..], b"hi");
        a.send_bytes(&[0; 100]).expect("send");
        assert_eq!(b.recv_bytes_max(10), Err(PipeError::TooLong { len: 100, max: 10 }));
        a.send_bytes(&[1; 10]).expect("send");
        assert_eq!(b.recv_bytes_max(10).expect("fits"), [1; 10]);
        a.send(&1u8).expect("send");
        assert!(matches!(b.recv::<String>(), Err(PipeError::Deserialize(_))));
    }

    #[test]
    fn large_messages_round_trip_through_small_rings() {
        let (mut a, mut b) = Pipe::with_capacity(true, 4096).expect("pipe");
        let big: Vec<u8> = (0..if cfg!(miri) { 20_000 } else { 16usize << 20 })
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        std::thread::scope(|s| {
            s.spawn(move || {
                let echo = b.recv_bytes().expect("recv");
                b.send_bytes(&echo).expect("echo");
            });
            a.send_bytes(&big).expect("send");
            assert!(a.recv_bytes().expect("echo") == big, "16 MiB intact both ways");
        });
    }

    #[test]
    fn close_ends_the_stream_after_what_was_sent() {
        let (mut a, mut b) = Pipe::new(true).expect("pipe");
        for i in 0..3u8 {
            a.send(&i).expect("send");
        }
        a.close();
        assert!(a.closed());
        assert_eq!(a.send(&9u8), Err(PipeError::Closed));
        let mut got = Vec::new();
        while b.poll(None).expect("readable") {
            match b.recv::<u8>() {
                Ok(x) => got.push(x),
                Err(PipeError::Eof) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(b.send(&1u8), Err(PipeError::BrokenPipe));
    }
}
