//! The two ends of a byte ring and their loans.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::Segment;
use shmproc_core::atomic::copy;
use shmproc_core::sys::{self, Deadline};
use shmproc_core::{Fault, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};

use super::Fail;
use super::frame::{Frame, Kind, ReadCursor, Spot, Stop, WriteCursor, wait_until};
use super::loan::{RecvLoan, SendLoan};
use super::{ByteRing, OpenError, READER_CLOSED, WRITER_CLOSED};
use crate::ring::{Word, claim};

/// The writing end of a byte ring. `Send`, not `Sync`.
pub struct ByteProducer {
    pub(super) ring: Arc<ByteRing>,
    pub(super) c: WriteCursor,
    claimed: u32,
}

/// The reading end of a byte ring. `Send`, not `Sync`.
pub struct ByteConsumer {
    pub(super) ring: Arc<ByteRing>,
    pub(super) c: ReadCursor,
    claimed: u32,
}

impl fmt::Debug for ByteProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteProducer")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ByteConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteConsumer")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

/// Makes this process the holder of `role` on its first use in a process;
/// true when it just did, and the caller reloads its cursor from the
/// shared positions (the reader and writer ends share this).
#[inline]
fn claim_role(claimed: &mut u32, role: &Word) -> bool {
    let me = sys::cached_pid();
    if *claimed == me {
        return false;
    }
    claim(role);
    *claimed = me;
    true
}

/// How long an end may wait (private: the public API has one method per
/// form).
#[derive(Clone, Copy, Debug)]
enum Until {
    /// Not at all (`try_*`).
    Now,
    /// Until the deadline (`*_timeout`).
    Deadline(Deadline),
    /// As long as needed.
    Forever,
}

impl ByteProducer {
    pub(crate) fn new(ring: Arc<ByteRing>) -> Self {
        Self {
            ring,
            c: WriteCursor::default(),
            claimed: 0,
        }
    }

    /// Takes the writing end of the byte ring named `name` (made by
    /// [`create_named`](super::create_named)) for this process.
    ///
    /// # Errors
    ///
    /// [`OpenError::Held`] when a live process holds the writing end,
    /// [`OpenError::Segment`] when there is no such byte ring (another
    /// object's type is [`SegmentError::TypeMismatch`](shmproc_core::SegmentError::TypeMismatch),
    /// naming both) or its headers are impossible.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let mut end = Self::new(ByteRing::open_end(name, "writing", |h| &h.writer)?);
        end.claim();
        Ok(end)
    }

    /// Makes this process the writer (on first use in a process).
    #[inline]
    pub(crate) fn claim(&mut self) {
        let h = self.ring.raw.header();
        if claim_role(&mut self.claimed, &h.writer) {
            self.c = WriteCursor {
                // Relaxed: our own index, last published by this end.
                tail: h.tail.load(Relaxed),
                // Acquire: as in `RawRing::spot`.
                cached_head: h.head.load(Acquire),
            };
        }
    }

    pub(crate) fn send_until(&mut self, msg: &[u8], deadline: Option<Deadline>) -> Result<(), Fail> {
        self.claim();
        if self.ring.closed() & READER_CLOSED != 0 {
            return Err(Fail::Disconnected);
        }
        let ring = &*self.ring;
        ring.raw.send(
            &mut self.c,
            msg,
            |raw, c, len, started| {
                let h = raw.header();
                let tail = c.tail;
                // Once part of a message is out, the rest follows whatever the
                // deadline: the reader would otherwise hold half a message.
                let deadline = if started { None } else { deadline };
                wait_until(
                    &h.head,
                    &h.writer_sleeping,
                    deadline,
                    || raw.has_room(tail, len),
                    |slice_over| ring.reader_gone(slice_over),
                )
                .map_err(|stop| match stop {
                    Stop::Timeout => Fail::Full,
                    Stop::Gone => Fail::Disconnected,
                })
            },
            || {},
        )
    }

    /// Sends one message, waiting for room as long as needed. Messages
    /// larger than half the ring are streamed in parts.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the reader closed or died,
    /// [`SendError::Fault`] for a corrupted ring.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError<()>> {
        self.send_until(msg, None).map_err(|e| e.send(()))
    }

    /// Sends, waiting for room up to `timeout` before the first byte goes
    /// out (a streamed message, once started, is finished).
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`], as for [`Self::send`] otherwise.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError<()>> {
        self.send_until(msg, Some(Deadline::after(timeout)))
            .map_err(|e| e.send_timeout((), timeout))
    }

    /// Sends a message that fits in one frame, without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`],
    /// [`TrySendError::Fault`] with [`Fault::TooLarge`] for more than
    /// [`Self::max_frame`] bytes, or a corrupted ring.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError<()>> {
        let loan = self.try_reserve(msg.len())?;
        let p = loan.producer.ring.raw.payload_ptr(loan.spot).as_ptr();
        // SAFETY: the spot was found for `msg.len()` bytes and nothing was
        // committed since: the bytes are ours; atomic-word stores.
        unsafe { copy::store_bytes(p, msg) };
        loan.commit();
        Ok(())
    }

    /// Finds room for a frame of `len` bytes, waiting as `until` says.
    fn reserve_until(&mut self, len: usize, until: Until) -> Result<(Spot, u32), Fail> {
        self.claim();
        let max = self.ring.raw.max_payload();
        let len = u32::try_from(len)
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| Fail::fault(Fault::TooLarge { len, max: max as usize }))?;
        loop {
            if self.ring.closed() & READER_CLOSED != 0 {
                return Err(Fail::Disconnected);
            }
            if let Some(spot) = self.ring.raw.spot(&mut self.c, len)? {
                return Ok((spot, len));
            }
            let deadline = match until {
                Until::Now => return Err(Fail::Full),
                Until::Deadline(d) => Some(d),
                Until::Forever => None,
            };
            let (ring, tail) = (&*self.ring, self.c.tail);
            let h = ring.raw.header();
            wait_until(
                &h.head,
                &h.writer_sleeping,
                deadline,
                || ring.raw.has_room(tail, len),
                |slice_over| ring.reader_gone(slice_over),
            )
            .map_err(|stop| match stop {
                Stop::Timeout => Fail::Full,
                Stop::Gone => Fail::Disconnected,
            })?;
        }
    }

    fn loan(&mut self, (spot, len): (Spot, u32)) -> SendLoan<'_> {
        SendLoan {
            producer: self,
            spot,
            len,
        }
    }

    /// Lends `len` bytes of the ring to be written in place (the zero-copy
    /// path), waiting for room as long as needed; nothing is visible to
    /// the reader until [`SendLoan::commit`].
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`], [`SendError::Fault`] with
    /// [`Fault::TooLarge`] for more than [`Self::max_frame`], or a
    /// corrupted ring.
    pub fn reserve(&mut self, len: usize) -> Result<SendLoan<'_>, SendError<()>> {
        let found = self.reserve_until(len, Until::Forever).map_err(|e| e.send(()))?;
        Ok(self.loan(found))
    }

    /// [`Self::reserve`] without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when there is no room now, as for
    /// [`Self::reserve`] otherwise.
    pub fn try_reserve(&mut self, len: usize) -> Result<SendLoan<'_>, TrySendError<()>> {
        let found = self.reserve_until(len, Until::Now).map_err(|e| e.try_send(()))?;
        Ok(self.loan(found))
    }

    /// [`Self::reserve`], waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`], as for [`Self::reserve`] otherwise.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<SendLoan<'_>, SendTimeoutError<()>> {
        let found = self
            .reserve_until(len, Until::Deadline(Deadline::after(timeout)))
            .map_err(|e| e.send_timeout((), timeout))?;
        Ok(self.loan(found))
    }

    /// The largest message that goes in one frame (and one loan).
    pub fn max_frame(&self) -> usize {
        self.ring.raw.max_payload() as usize
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.raw.cap as usize
    }

    /// Marks this end closed: the reader drains what is left, then gets
    /// [`RecvError::Disconnected`].
    pub fn close(&mut self) {
        self.ring.close_side(WRITER_CLOSED);
    }

    /// Whether the reader's end is closed.
    pub fn is_reader_closed(&self) -> bool {
        self.ring.closed() & READER_CLOSED != 0
    }
}

impl ByteConsumer {
    pub(crate) fn new(ring: Arc<ByteRing>) -> Self {
        Self {
            ring,
            c: ReadCursor::default(),
            claimed: 0,
        }
    }

    /// Takes the reading end of the byte ring named `name` for this
    /// process.
    ///
    /// # Errors
    ///
    /// As for [`ByteProducer::open`], for the reading end.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let mut end = Self::new(ByteRing::open_end(name, "reading", |h| &h.reader)?);
        end.claim();
        Ok(end)
    }

    /// Makes this process the reader (on first use in a process).
    #[inline]
    pub(crate) fn claim(&mut self) {
        let h = self.ring.raw.header();
        if claim_role(&mut self.claimed, &h.reader) {
            self.c = ReadCursor {
                // Relaxed: our own index.
                head: h.head.load(Relaxed),
                // Acquire: as in `RawRing::peek_frame`.
                cached_tail: h.tail.load(Acquire),
            };
        }
    }

    /// Receives a message into `out`, waiting until `deadline` (an already
    /// passed one: not at all, unless a streamed message has started).
    pub(crate) fn recv_until(&mut self, out: &mut Vec<u8>, deadline: Option<Deadline>) -> Result<(), Fail> {
        self.claim();
        let ring = &*self.ring;
        let result = ring.raw.recv(
            &mut self.c,
            out,
            |raw, c, assembling| {
                let h = raw.header();
                let head = c.head;
                let deadline = if assembling { None } else { deadline };
                let waited = wait_until(
                    &h.tail,
                    &h.reader_sleeping,
                    deadline,
                    || raw.has_frame(head),
                    |slice_over| ring.writer_gone(slice_over),
                );
                match waited {
                    Ok(()) => Ok(true),
                    Err(Stop::Timeout) => Err(Fail::Empty),
                    // Whatever was published before the end is still read.
                    Err(Stop::Gone) if raw.has_frame(head) => Ok(true),
                    Err(Stop::Gone) => Err(Fail::Disconnected),
                }
            },
            || {},
        );
        if result.is_err() {
            out.clear();
        }
        result
    }

    /// Receives the next message into `out` (its old contents replaced),
    /// waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the writer closed or died and
    /// everything it sent was read (a message it was streaming when it died
    /// is dropped), [`RecvError::Fault`] for a corrupted ring.
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<(), RecvError> {
        self.recv_until(out, None).map_err(Fail::recv)
    }

    /// Receives, waiting up to `timeout` for a message to start.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], as for [`Self::recv`] otherwise.
    pub fn recv_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvTimeoutError> {
        self.recv_until(out, Some(Deadline::after(timeout)))
            .map_err(|e| e.recv_timeout(timeout))
    }

    /// Receives without waiting for a message to start (the rest of a
    /// streamed message, once started, is waited for).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], as for [`Self::recv`] otherwise.
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<(), TryRecvError> {
        self.recv_until(out, Some(Deadline::after(Duration::ZERO)))
            .map_err(Fail::try_recv)
    }

    /// Finds the next whole message, waiting as `until` says.
    fn peek_until(&mut self, until: Until) -> Result<Frame, Fail> {
        self.claim();
        loop {
            let Some(f) = self.ring.raw.peek_frame(&mut self.c)? else {
                self.ring.raw.release_padding(&mut self.c);
                if self.ring.writer_gone(false) && !self.ring.raw.has_frame(self.c.head) {
                    return Err(Fail::Disconnected);
                }
                let deadline = match until {
                    Until::Now => return Err(Fail::Empty),
                    Until::Deadline(d) => Some(d),
                    Until::Forever => None,
                };
                if !self.readable(deadline) {
                    return Err(Fail::Empty);
                }
                continue;
            };
            match f.kind {
                Kind::Whole => return Ok(f),
                Kind::First => {
                    // A streamed message is larger than a frame (its exact
                    // length is a peer's word, checked only by `recv`).
                    return Err(Fail::fault(Fault::TooLarge {
                        len: self.ring.raw.max_payload() as usize + 1,
                        max: self.ring.raw.max_payload() as usize,
                    }));
                }
                // Remnants of a dead writer's or reader's message.
                _ => self.ring.raw.release(&mut self.c, &f),
            }
        }
    }

    fn loan(&mut self, frame: Frame) -> RecvLoan<'_> {
        RecvLoan { consumer: self, frame }
    }

    /// Lends the next message to be read in place (the zero-copy path),
    /// waiting as long as needed; it is handed back when the [`RecvLoan`]
    /// is dropped. The `&[u8]` is sound only while the writer keeps the
    /// protocol (see [`RecvLoan`]); [`Self::recv`] is the defensive,
    /// copying path.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the writer closed and everything
    /// was read, [`RecvError::Fault`] with [`Fault::TooLarge`] when the
    /// next message was streamed in parts (read it with [`Self::recv`]), or
    /// for a corrupted ring.
    pub fn peek(&mut self) -> Result<RecvLoan<'_>, RecvError> {
        let f = self.peek_until(Until::Forever).map_err(Fail::recv)?;
        Ok(self.loan(f))
    }

    /// [`Self::peek`] without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], as for [`Self::peek`] otherwise.
    pub fn try_peek(&mut self) -> Result<RecvLoan<'_>, TryRecvError> {
        let f = self.peek_until(Until::Now).map_err(Fail::try_recv)?;
        Ok(self.loan(f))
    }

    /// [`Self::peek`], waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], as for [`Self::peek`] otherwise.
    pub fn peek_timeout(&mut self, timeout: Duration) -> Result<RecvLoan<'_>, RecvTimeoutError> {
        let f = self
            .peek_until(Until::Deadline(Deadline::after(timeout)))
            .map_err(|e| e.recv_timeout(timeout))?;
        Ok(self.loan(f))
    }

    /// Whether a message can be read, waiting until `deadline` (forever
    /// with `None`; an already passed one: not at all); also true when the
    /// writer closed or died, so that the next receive reports it.
    /// Consumes nothing.
    pub(crate) fn readable(&mut self, deadline: Option<Deadline>) -> bool {
        self.claim();
        let h = self.ring.raw.header();
        let head = self.c.head;
        let raw = self.ring.raw;
        let ring = &self.ring;
        match wait_until(
            &h.tail,
            &h.reader_sleeping,
            deadline,
            || raw.has_frame(head),
            |slice_over| ring.writer_gone(slice_over),
        ) {
            Ok(()) | Err(Stop::Gone) => true,
            // A timed-out look still reports a dead writer (a non-blocking
            // one never gets to the wait's liveness checks).
            Err(Stop::Timeout) => ring.writer_gone(true),
        }
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.raw.cap as usize
    }

    /// Marks this end closed: a blocked or later send fails with
    /// [`SendError::Disconnected`].
    pub fn close(&mut self) {
        self.ring.close_side(READER_CLOSED);
    }
}

impl Serialize for ByteProducer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.seg.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ByteProducer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ring = ByteRing::attach(Segment::deserialize(deserializer)?).map_err(shmproc_core::handle::decode_error)?;
        let mut end = Self::new(Arc::new(ring));
        end.claim();
        Ok(end)
    }
}

impl Serialize for ByteConsumer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.seg.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ByteConsumer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ring = ByteRing::attach(Segment::deserialize(deserializer)?).map_err(shmproc_core::handle::decode_error)?;
        let mut end = Self::new(Arc::new(ring));
        end.claim();
        Ok(end)
    }
}
