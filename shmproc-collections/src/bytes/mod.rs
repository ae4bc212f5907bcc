//! Byte rings: framed variable-length records in shared memory, the layer
//! under [`Queue`](crate::queue::Queue) and [`Pipe`](crate::pipe::Pipe), with a loan API
//! on raw bytes.
//!
//! # Frames
//!
//! The ring is `capacity` bytes (a power of two) addressed by free-running
//! `u32` byte positions `tail` (written by the writer) and `head` (by the
//! reader), as in the [`spsc`](crate::spsc) ring. A record is a frame:
//!
//! ```text
//! | len: u32 | TAG | kind: u32 | payload (len bytes) | padding to 8 |
//! ```
//!
//! A frame never wraps: when it does not fit before the end of the ring,
//! the writer first fills the rest with a `Pad` frame. A frame holds at most
//! half the ring, so a frame always fits once the ring has drained. A
//! message larger than that is streamed: a `First` frame whose payload
//! starts with the message's total length, `Middle` frames, and a `Last`
//! frame; the reader reassembles it. A stream whose writer died is ended by
//! an `Abort` frame (queues) or by the end of the stream (pipes), and the
//! reader drops the part it has: a half-written message is never
//! delivered. A reader that finds `Middle`, `Last` or `Abort` frames where a
//! message should start skips them: they are what is left of a message
//! whose reader died while taking it.
//!
//! # Bad input
//!
//! Every frame header is checked before use: its tag and kind, its length
//! against the bytes published and against the end of the ring, a `Pad`
//! against the exact distance to the end, a stream's parts against its
//! announced total. Anything else is [`Fault::Corrupted`](shmproc_core::Fault::Corrupted), reported
//! without moving `head` (nothing is lost or half-consumed).
//!
//! # Memory ordering
//!
//! Frames (headers and payloads) are published by the Release store of
//! `tail` and acquired by the reader's Acquire load; the reader hands bytes
//! back by the Release store of `head`, acquired by the writer before it
//! overwrites them. Sleeping uses the SPSC ring's membarrier handshake.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use shmproc_core::sys;
use shmproc_core::{Segment, SegmentError, SegmentKind, TypeIdentity};

use crate::ring::{HEADER, MAX_CAPACITY, Word, peer_gone, ring_capacity};
use crate::sync;

mod ends;
mod fail;
mod frame;
mod loan;
#[cfg(test)]
mod tests;

pub use ends::{ByteConsumer, ByteProducer};
pub(crate) use fail::{Fail, relabel};
pub(crate) use frame::{Kind, RawRing, ReadCursor, Stop, WriteCursor, wait_until};
pub use loan::{RecvLoan, SendLoan};

/// Smallest ring, in bytes.
pub const MIN_CAPACITY: usize = 64;
/// Bytes of a frame header.
pub(crate) const FRAME: u32 = 8;
/// Marks a frame header (the high half of its second word).
const TAG: u32 = 0x5348_0000;

pub(crate) const WRITER_CLOSED: u32 = 1;
pub(crate) const READER_CLOSED: u32 = 2;

/// The shared words of one ring: three 128-byte lines, as in the SPSC ring.
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) capacity: Word,
    /// The writing process (pipes: liveness of the peer).
    pub(crate) writer: Word,
    /// The reading process.
    pub(crate) reader: Word,
    /// `WRITER_CLOSED | READER_CLOSED`.
    pub(crate) closed: Word,
    pub(crate) writer_sleeping: Word,
    pub(crate) reader_sleeping: Word,
    _pad0: [Word; 26],
    pub(crate) tail: Word,
    _pad1: [Word; 31],
    pub(crate) head: Word,
    _pad2: [Word; 31],
}

const _: () = assert!(size_of::<RingHeader>() == HEADER);

/// Checks a byte capacity read from shared memory or asked for by a user.
pub(crate) fn valid_capacity(capacity: u32) -> bool {
    capacity.is_power_of_two() && capacity as usize >= MIN_CAPACITY && capacity as usize <= MAX_CAPACITY
}

/// Rounds a requested capacity up to a valid one.
pub(crate) fn round_capacity(bytes: usize) -> Result<u32, SegmentError> {
    let cap = bytes
        .max(MIN_CAPACITY)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX);
    if bytes == 0 || cap > MAX_CAPACITY {
        return Err(SegmentError::InvalidSize {
            requested: bytes as u64,
            reason: "a byte ring holds 1 byte to 1 GiB",
        });
    }
    Ok(u32::try_from(cap).expect("at most 2^30"))
}

/// One byte ring in its own segment.
pub(crate) struct ByteRing {
    seg: Segment,
    raw: RawRing,
}

impl fmt::Debug for ByteRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteRing")
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl ByteRing {
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<u8>(SegmentKind::RING_BYTES)
    }

    /// A new ring, in a named segment when `name` is given.
    pub(crate) fn create(name: Option<&str>, capacity: usize) -> Result<Self, SegmentError> {
        let cap = round_capacity(capacity)?;
        let len = HEADER + cap as usize;
        let seg = match name {
            Some(name) => Segment::create_named(name, &Self::identity(), len)?,
            None => Segment::create(&Self::identity(), len)?,
        };
        let raw = Self::map(&seg, cap);
        // Relaxed: not shared with anyone yet.
        raw.header().capacity.store(cap, Relaxed);
        Ok(Self { seg, raw })
    }

    pub(crate) fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let cap = ring_capacity::<u8>(&seg, &Self::identity(), 64, |cap| cap.checked_add(HEADER))?;
        let raw = Self::map(&seg, cap);
        Ok(Self { seg, raw })
    }

    /// The ring of a segment whose payload is `HEADER + cap` bytes, with
    /// `cap` checked by [`valid_capacity`].
    fn map(seg: &Segment, cap: u32) -> RawRing {
        // SAFETY: HEADER < payload length: inside the mapping.
        let data = unsafe { seg.payload().add(HEADER) };
        // SAFETY: the payload (128-aligned) is a header then cap bytes, and
        // the segment outlives the RawRing (both in ByteRing).
        unsafe { RawRing::new(seg.payload(), data, cap) }
    }

    fn closed(&self) -> u32 {
        // Acquire: pairs with the Release in `close_side`, so a close is
        // seen after everything published before it.
        self.raw.header().closed.load(Acquire)
    }

    /// Whether the reader closed its end or (with `check_alive`) died.
    pub(crate) fn reader_gone(&self, check_alive: bool) -> bool {
        peer_gone(self.closed(), READER_CLOSED, &self.raw.header().reader, check_alive)
    }

    /// Whether the writer closed its end or (with `check_alive`) died.
    pub(crate) fn writer_gone(&self, check_alive: bool) -> bool {
        peer_gone(self.closed(), WRITER_CLOSED, &self.raw.header().writer, check_alive)
    }

    pub(crate) fn close_side(&self, bit: u32) {
        let h = self.raw.header();
        // Release: everything sent before the close is visible with it.
        h.closed.fetch_or(bit, Release);
        sync::futex_wake(&h.tail, u32::MAX);
        sync::futex_wake(&h.head, u32::MAX);
    }
}

/// Creates a byte ring of at least `capacity` bytes (rounded up to a power
/// of two, at least [`MIN_CAPACITY`]) and returns its two ends. Messages
/// larger than half the ring are streamed through it in parts.
///
/// # Errors
///
/// [`SegmentError::InvalidSize`] for a zero or too large capacity.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = shmproc_collections::bytes::channel(1024)?;
/// std::thread::scope(|s| {
///     s.spawn(move || {
///         tx.send(b"hello").expect("reader there");
///         // Larger than the ring: streamed in parts as the reader reads.
///         tx.send(&vec![7u8; 10_000]).expect("reader there");
///     });
///     let mut msg = Vec::new();
///     rx.recv(&mut msg).expect("first");
///     assert_eq!(msg, b"hello");
///     rx.recv(&mut msg).expect("second");
///     assert_eq!(msg, [7u8; 10_000]);
/// });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel(capacity: usize) -> Result<(ByteProducer, ByteConsumer), SegmentError> {
    sys::membarrier_register();
    let ring = Arc::new(ByteRing::create(None, capacity)?);
    Ok((ByteProducer::new(Arc::clone(&ring)), ByteConsumer::new(ring)))
}

/// As [`channel`], in a named segment: any process (not only our
/// children) can take either end with [`ByteProducer::open`] or
/// [`ByteConsumer::open`]. An end is held by the process that last used
/// it; the ends returned here are taken only when first used, so the
/// creator can keep one and leave the other to be opened. The name stays
/// until [`Segment::unlink`].
///
/// # Errors
///
/// As for [`channel`], and [`SegmentError::InvalidName`],
/// [`SegmentError::AlreadyExists`].
pub fn create_named(name: &str, capacity: usize) -> Result<(ByteProducer, ByteConsumer), SegmentError> {
    sys::membarrier_register();
    let ring = Arc::new(ByteRing::create(Some(name), capacity)?);
    Ok((ByteProducer::new(Arc::clone(&ring)), ByteConsumer::new(ring)))
}

/// Why a named byte ring's end could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No such ring, not a byte ring, or impossible headers.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A live process holds that end.
    #[error("the {end} end of byte ring {name:?} is held by live process {pid}")]
    Held {
        /// `"writing"` or `"reading"`.
        end: &'static str,
        /// The ring's name.
        name: String,
        /// The holder.
        pid: u32,
    },
}

impl From<OpenError> for shmproc_core::Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Segment(e) => e.into(),
            held @ OpenError::Held { .. } => Self::new(shmproc_core::ErrorKind::WouldBlock, held),
        }
    }
}

impl ByteRing {
    /// Opens the ring named `name` and takes the end whose holder word is
    /// `role` (of `end`'s name) for this process, unless a live process
    /// other than this one holds it.
    pub(crate) fn open_end(
        name: &str,
        end: &'static str,
        role: impl Fn(&RingHeader) -> &Word,
    ) -> Result<Arc<Self>, OpenError> {
        let ring = Self::attach(Segment::open_named(name, Some(&Self::identity()))?)?;
        sys::membarrier_register();
        let me = sync::owner_id();
        let word = role(ring.raw.header());
        // Relaxed: an owner id for liveness checks, as in `claim`.
        let mut seen = word.load(Relaxed);
        loop {
            if seen != 0 && seen != me && sync::owner_alive(seen) {
                return Err(OpenError::Held {
                    end,
                    name: name.to_owned(),
                    pid: sync::pid_of(seen),
                });
            }
            // Relaxed: as above; the compare makes two openers race fairly.
            match word.compare_exchange(seen, me, Relaxed, Relaxed) {
                Ok(_) => return Ok(Arc::new(ring)),
                Err(now) => seen = now,
            }
        }
    }
}
