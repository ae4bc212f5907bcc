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

use shmproc_core::SegmentError;

use crate::ring::{HEADER, MAX_CAPACITY, Word};

// Under loom only the frames and the raw ring are built (the queue's
// models run them on heap memory); the segment and the ends are not.
#[cfg(not(loom))]
mod ends;
mod fail;
mod frame;
#[cfg(not(loom))]
mod loan;
#[cfg(not(loom))]
mod ring;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use ends::{ByteConsumer, ByteProducer};
pub(crate) use fail::{Fail, relabel};
pub(crate) use frame::{Kind, RawRing, ReadCursor, Stop, WriteCursor, wait_until};
#[cfg(not(loom))]
pub use loan::{RecvLoan, SendLoan};
#[cfg(not(loom))]
pub(crate) use ring::ByteRing;
#[cfg(not(loom))]
pub use ring::{OpenError, channel, create_named};

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
#[derive(Default)]
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

// Loom's atomics are larger: under loom the header is a heap value.
#[cfg(not(loom))]
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
