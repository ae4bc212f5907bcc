//! One byte ring in a segment of its own: creating, attaching and naming
//! it, closing a side, and the two constructors of its ends.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use shmproc_core::sys;
use shmproc_core::{Segment, SegmentError, SegmentKind, TypeIdentity};

use super::{ByteConsumer, ByteProducer, READER_CLOSED, RawRing, RingHeader, WRITER_CLOSED, round_capacity};
use crate::ring::{HEADER, Word, peer_gone, ring_capacity, wake_for_close};
use crate::sync;

/// One byte ring in its own segment.
pub(crate) struct ByteRing {
    pub(super) seg: Segment,
    pub(super) raw: RawRing,
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

    pub(super) fn closed(&self) -> u32 {
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
        wake_for_close(&h.tail, &h.reader_sleeping);
        wake_for_close(&h.head, &h.writer_sleeping);
    }
}

/// Creates a byte ring of at least `capacity` bytes (rounded up to a power
/// of two, at least [`MIN_CAPACITY`](super::MIN_CAPACITY)) and returns its two ends. Messages
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
