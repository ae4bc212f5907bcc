//! The two ends of a byte ring and their loans.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shm_core::Segment;
use shm_core::atomic::copy;
use shm_core::sys::{self, Deadline};

use super::frame::{Frame, Kind, ReadCursor, Spot, Stop, WriteCursor, wait_until};
use super::{ByteRing, READER_CLOSED, WRITER_CLOSED};
use crate::spsc::{RingError, claim};

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

impl ByteProducer {
    pub(crate) fn new(ring: Arc<ByteRing>) -> Self {
        Self {
            ring,
            c: WriteCursor::default(),
            claimed: 0,
        }
    }

    /// Makes this process the writer (on first use in a process).
    #[inline]
    pub(crate) fn claim(&mut self) {
        let me = sys::cached_pid();
        if self.claimed != me {
            let h = self.ring.raw.header();
            claim(&h.writer);
            // Relaxed: our own index, last published by this end.
            self.c.tail = h.tail.load(Relaxed);
            // Acquire: as in `RawRing::spot`.
            self.c.cached_head = h.head.load(Acquire);
            self.claimed = me;
        }
    }

    fn send_until(&mut self, msg: &[u8], deadline: Option<Deadline>) -> Result<(), RingError> {
        self.claim();
        if self.ring.closed() & READER_CLOSED != 0 {
            return Err(RingError::Disconnected);
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
                    Stop::Timeout => RingError::Full,
                    Stop::Gone => RingError::Disconnected,
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
    /// [`RingError::Disconnected`] when the reader closed or died,
    /// [`RingError::Corrupted`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), RingError> {
        self.send_until(msg, None)
    }

    /// Sends, waiting for room up to `timeout` before the first byte goes
    /// out (a streamed message, once started, is finished).
    ///
    /// # Errors
    ///
    /// [`RingError::Full`] on timeout, as for [`Self::send`] otherwise.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), RingError> {
        self.send_until(msg, Some(Deadline::after(timeout)))
    }

    /// Sends a message that fits in one frame, without waiting.
    ///
    /// # Errors
    ///
    /// [`RingError::Full`], [`RingError::TooLarge`] for more than
    /// [`Self::max_frame`] bytes, [`RingError::Disconnected`],
    /// [`RingError::Corrupted`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), RingError> {
        let loan = self.reserve(msg.len())?;
        let p = loan.producer.ring.raw.payload_ptr(loan.spot).as_ptr();
        // SAFETY: the spot was found for `msg.len()` bytes and nothing was
        // committed since: the bytes are ours; atomic-word stores.
        unsafe { copy::store_bytes(p, msg) };
        loan.commit();
        Ok(())
    }

    /// Lends `len` bytes of the ring to be written in place (the zero-copy
    /// path); nothing is visible to the reader until [`ByteLoan::commit`].
    ///
    /// # Errors
    ///
    /// [`RingError::Full`] when there is no room now,
    /// [`RingError::TooLarge`] for more than [`Self::max_frame`],
    /// [`RingError::Disconnected`], [`RingError::Corrupted`].
    pub fn reserve(&mut self, len: usize) -> Result<ByteLoan<'_>, RingError> {
        self.claim();
        let len = u32::try_from(len)
            .ok()
            .filter(|&l| l <= self.ring.raw.max_payload())
            .ok_or(RingError::TooLarge)?;
        if self.ring.closed() & READER_CLOSED != 0 {
            return Err(RingError::Disconnected);
        }
        let spot = self.ring.raw.spot(&mut self.c, len)?.ok_or(RingError::Full)?;
        Ok(ByteLoan {
            producer: self,
            spot,
            len,
        })
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
    /// [`RingError::Disconnected`].
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

    /// Makes this process the reader (on first use in a process).
    #[inline]
    pub(crate) fn claim(&mut self) {
        let me = sys::cached_pid();
        if self.claimed != me {
            let h = self.ring.raw.header();
            claim(&h.reader);
            // Relaxed: our own index.
            self.c.head = h.head.load(Relaxed);
            // Acquire: as in `RawRing::peek_frame`.
            self.c.cached_tail = h.tail.load(Acquire);
            self.claimed = me;
        }
    }

    /// Receives a message into `out`, waiting until `deadline`.
    fn recv_until(&mut self, out: &mut Vec<u8>, deadline: Option<Deadline>) -> Result<(), RingError> {
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
                    Err(Stop::Timeout) => Err(RingError::Empty),
                    // Whatever was published before the end is still read.
                    Err(Stop::Gone) if raw.has_frame(head) => Ok(true),
                    Err(Stop::Gone) => Err(RingError::Disconnected),
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
    /// [`RingError::Disconnected`] once the writer closed or died and
    /// everything it sent was read (a message it was streaming when it died
    /// is dropped), [`RingError::Corrupted`].
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<(), RingError> {
        self.recv_until(out, None)
    }

    /// Receives, waiting up to `timeout` for a message to start.
    ///
    /// # Errors
    ///
    /// [`RingError::Empty`] on timeout, as for [`Self::recv`] otherwise.
    pub fn recv_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<(), RingError> {
        self.recv_until(out, Some(Deadline::after(timeout)))
    }

    /// Receives without waiting for a message to start.
    ///
    /// # Errors
    ///
    /// [`RingError::Empty`], as for [`Self::recv`] otherwise.
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<(), RingError> {
        self.recv_until(out, Some(Deadline::after(Duration::ZERO)))
    }

    /// Lends the next message to be read in place (the zero-copy path); it
    /// is handed back when the [`ByteView`] is dropped.
    /// The `&[u8]` is sound only while the writer keeps the protocol (see
    /// [`ByteView`]); [`Self::recv`] is the defensive, copying path.
    ///
    /// # Errors
    ///
    /// [`RingError::Empty`], [`RingError::TooLarge`] when the next message
    /// was streamed in parts (read it with [`Self::recv`]),
    /// [`RingError::Disconnected`] once the writer closed and everything
    /// was read, [`RingError::Corrupted`].
    pub fn peek(&mut self) -> Result<ByteView<'_>, RingError> {
        self.claim();
        loop {
            let Some(f) = self.ring.raw.peek_frame(&mut self.c)? else {
                self.ring.raw.release_padding(&mut self.c);
                return Err(
                    if self.ring.writer_gone(false) && !self.ring.raw.has_frame(self.c.head) {
                        RingError::Disconnected
                    } else {
                        RingError::Empty
                    },
                );
            };
            match f.kind {
                Kind::Whole => {
                    return Ok(ByteView {
                        consumer: self,
                        frame: f,
                    });
                }
                Kind::First => return Err(RingError::TooLarge),
                // Remnants of a dead writer's or reader's message.
                _ => self.ring.raw.release(&mut self.c, &f),
            }
        }
    }

    /// Whether a message can be read now, waiting up to `timeout` (forever
    /// with `None`); also true when the writer closed or died, so that the
    /// next receive reports it. Consumes nothing.
    pub fn poll(&mut self, timeout: Option<Duration>) -> bool {
        self.claim();
        let h = self.ring.raw.header();
        let head = self.c.head;
        let raw = self.ring.raw;
        let ring = &self.ring;
        let deadline = timeout.map(Deadline::after);
        match wait_until(
            &h.tail,
            &h.reader_sleeping,
            deadline,
            || raw.has_frame(head),
            |slice_over| ring.writer_gone(slice_over),
        ) {
            Ok(()) | Err(Stop::Gone) => true,
            Err(Stop::Timeout) => false,
        }
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.raw.cap as usize
    }

    /// Marks this end closed: a blocked or later send fails with
    /// [`RingError::Disconnected`].
    pub fn close(&mut self) {
        self.ring.close_side(READER_CLOSED);
    }
}

/// Bytes lent by [`ByteProducer::reserve`]; write them through `DerefMut`,
/// then [`ByteLoan::commit`]. Dropped without commit, nothing is sent.
///
/// The `&mut [u8]` points into shared memory; it is sound because no reader
/// looks at these bytes until commit (the reader stops at the published
/// `tail`). A reader that scribbles on them anyway breaks that;
/// [`ByteProducer::send`] (a copy through atomic words) is sound under any
/// peer.
pub struct ByteLoan<'a> {
    producer: &'a mut ByteProducer,
    spot: Spot,
    len: u32,
}

impl ByteLoan<'_> {
    /// Sends the whole loan as one message.
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len as usize);
    }

    /// Sends the first `len` bytes of the loan as one message.
    ///
    /// # Panics
    ///
    /// If `len` is larger than the loan.
    pub fn commit_len(self, len: usize) {
        assert!(len <= self.len as usize, "committing more than was reserved");
        let p = self.producer;
        let len = u32::try_from(len).expect("at most the loan's u32 length");
        p.ring.raw.commit(&mut p.c, self.spot, len, Kind::Whole);
    }
}

impl Deref for ByteLoan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the spot was found for `len` bytes and nothing was
        // committed since (the loan borrows the producer mutably).
        unsafe { self.producer.ring.raw.payload_mut(self.spot, self.len) }
    }
}

impl DerefMut for ByteLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`.
        unsafe { self.producer.ring.raw.payload_mut(self.spot, self.len) }
    }
}

impl fmt::Debug for ByteLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteLoan").field("len", &self.len).finish()
    }
}

/// A message lent by [`ByteConsumer::peek`], read in place; handed back to
/// the writer when dropped.
///
/// A zero-copy read loan: the `&[u8]` points into shared memory and is
/// sound only while the writer keeps the protocol (it does not write a
/// published frame before the reader hands it back). Against a buggy or
/// hostile writer use [`ByteConsumer::recv`], which copies through atomic
/// words and validates every frame header (crate `shm`'s trust model).
pub struct ByteView<'a> {
    consumer: &'a mut ByteConsumer,
    frame: Frame,
}

impl Deref for ByteView<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.ring.raw.payload(&self.frame)
    }
}

impl Drop for ByteView<'_> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        c.ring.raw.release(&mut c.c, &self.frame);
    }
}

impl fmt::Debug for ByteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteView").field("len", &self.frame.len).finish()
    }
}

impl Serialize for ByteProducer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.seg.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ByteProducer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ring = ByteRing::attach(Segment::deserialize(deserializer)?).map_err(shm_core::handle::decode_error)?;
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
        let ring = ByteRing::attach(Segment::deserialize(deserializer)?).map_err(shm_core::handle::decode_error)?;
        let mut end = Self::new(Arc::new(ring));
        end.claim();
        Ok(end)
    }
}
