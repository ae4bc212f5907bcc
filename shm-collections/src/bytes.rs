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
//! announced total. Anything else is [`RingError::Corrupted`], reported
//! without moving `head` (nothing is lost or half-consumed).
//!
//! # Memory ordering
//!
//! Frames (headers and payloads) are published by the Release store of
//! `tail` and acquired by the reader's Acquire load; the reader hands bytes
//! back by the Release store of `head`, acquired by the writer before it
//! overwrites them. Sleeping uses the SPSC ring's membarrier handshake.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shm_core::atomic::copy;
use shm_core::sys::{self, Deadline};
use shm_core::{Segment, SegmentError, SegmentKind, TypeIdentity};

use crate::ring::{HEADER, MAX_CAPACITY, Slept, Word, claim, peer_gone, sleep_on, wake_if_sleeping};
// Shim (issue 10, RINGS): the byte ring's error until it moves to
// `shm_core`'s family; hidden, only for the tests that name it.
#[doc(hidden)]
pub use crate::ring::RingError;

/// Smallest ring, in bytes.
pub const MIN_CAPACITY: usize = 64;
/// Bytes of a frame header.
pub(crate) const FRAME: u32 = 8;
/// Marks a frame header (the high half of its second word).
const TAG: u32 = 0x5348_0000;

pub(crate) const WRITER_CLOSED: u32 = 1;
pub(crate) const READER_CLOSED: u32 = 2;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// A whole message.
    Whole = 1,
    /// The first part of a streamed message; starts with its total length.
    First = 2,
    /// A middle part.
    Middle = 3,
    /// The last part.
    Last = 4,
    /// Filler up to the end of the ring.
    Pad = 5,
    /// The stream in progress was abandoned.
    Abort = 6,
}

impl Kind {
    fn from_word(word: u32) -> Option<Self> {
        if word & !0xFFFF != TAG {
            return None;
        }
        Some(match word & 0xFFFF {
            1 => Self::Whole,
            2 => Self::First,
            3 => Self::Middle,
            4 => Self::Last,
            5 => Self::Pad,
            6 => Self::Abort,
            _ => return None,
        })
    }
}

/// Bytes a frame of `len` payload bytes takes.
#[inline]
fn frame_size(len: u32) -> u32 {
    FRAME + len.next_multiple_of(8)
}

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

/// A writer's private view of the positions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriteCursor {
    pub(crate) tail: u32,
    pub(crate) cached_head: u32,
}

/// A reader's private view of the positions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReadCursor {
    pub(crate) head: u32,
    pub(crate) cached_tail: u32,
}

/// Where a frame will go: `skip` bytes of padding first, then the frame at
/// offset `at`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spot {
    skip: u32,
    at: u32,
}

/// A frame found by the reader.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    /// Offset of the payload in the data area.
    at: u32,
    pub(crate) len: u32,
    /// `head` once this frame is consumed.
    next: u32,
}

/// How a reader's wait ended without data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The caller's deadline passed.
    Timeout,
    /// The other side is gone (closed or dead).
    Gone,
}

/// One ring in mapped memory: a header and `cap` bytes of frames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRing {
    hdr: NonNull<RingHeader>,
    data: NonNull<u8>,
    cap: u32,
}

// SAFETY: the pointers reach shared memory through atomics and frames that
// the protocol hands to one side at a time; whoever builds a RawRing keeps
// the mapping alive as long as it is used (`ByteRing`, `QueueShared`).
unsafe impl Send for RawRing {}
// SAFETY: as above.
unsafe impl Sync for RawRing {}

impl RawRing {
    /// # Safety
    ///
    /// `hdr` points to a `RingHeader` and `data` to `cap` bytes, both
    /// 8-aligned and mapped for as long as the result is used; `cap` passes
    /// [`valid_capacity`].
    pub(crate) unsafe fn new(hdr: NonNull<u8>, data: NonNull<u8>, cap: u32) -> Self {
        debug_assert!(valid_capacity(cap));
        Self {
            hdr: hdr.cast(),
            data,
            cap,
        }
    }

    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: `new`'s contract.
        unsafe { self.hdr.as_ref() }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.cap
    }

    /// The largest payload of one frame: half the ring, less a header.
    pub(crate) fn max_payload(&self) -> u32 {
        self.cap / 2 - FRAME
    }

    /// Pointer to byte `off` of the data area (`off <= cap`).
    #[inline]
    fn at(&self, off: u32) -> NonNull<u8> {
        debug_assert!(off <= self.cap);
        // SAFETY: off <= cap: inside the data area or one past its end.
        unsafe { self.data.add(off as usize) }
    }

    fn used(&self, tail: u32, head: u32) -> Result<u32, RingError> {
        let used = tail.wrapping_sub(head);
        if used > self.cap || !used.is_multiple_of(FRAME) {
            return Err(RingError::Corrupted(
                "positions further apart than the ring, or unaligned",
            ));
        }
        Ok(used)
    }

    // ---- writer ----

    /// Room for a frame of `len` payload bytes now? `None` when full.
    pub(crate) fn spot(&self, c: &mut WriteCursor, len: u32) -> Result<Option<Spot>, RingError> {
        debug_assert!(len <= self.max_payload());
        let size = frame_size(len);
        let pos = c.tail & (self.cap - 1);
        let to_end = self.cap - pos;
        let skip = if size > to_end { to_end } else { 0 };
        let need = skip + size;
        if self.cap - self.used(c.tail, c.cached_head)? < need {
            // Acquire: pairs with the reader's Release store of `head`;
            // the bytes it handed back are ours to overwrite.
            c.cached_head = self.header().head.load(Acquire);
            if self.cap - self.used(c.tail, c.cached_head)? < need {
                return Ok(None);
            }
        }
        Ok(Some(Spot {
            skip,
            at: (pos + skip) & (self.cap - 1),
        }))
    }

    /// Whether a frame of `len` bytes fits now, from fresh positions (for a
    /// sleeper's re-check).
    pub(crate) fn has_room(&self, tail: u32, len: u32) -> bool {
        let mut c = WriteCursor {
            tail,
            // Acquire: as in `spot`.
            cached_head: self.header().head.load(Acquire),
        };
        // A corrupted ring counts as ready: the caller then reports it.
        !matches!(self.spot(&mut c, len), Ok(None))
    }

    /// The payload bytes of a frame at `spot`, `len` long.
    ///
    /// # Safety
    ///
    /// `spot` came from [`Self::spot`] for at least `len` bytes on this
    /// cursor and nothing was committed since: the bytes are the writer's
    /// alone until committed.
    ///
    /// This is a write loan over shared memory: sound because no reader
    /// looks at the bytes before the commit (it reads only below the
    /// published `tail`). The copying paths use [`Self::payload_ptr`].
    #[allow(
        clippy::mut_from_ref,
        reason = "the ring protocol hands these bytes to the writer alone"
    )]
    pub(crate) unsafe fn payload_mut(&self, spot: Spot, len: u32) -> &mut [u8] {
        // SAFETY: at + FRAME + len <= cap (the spot fits the frame, caller);
        // the range is not read by the reader before the commit.
        unsafe { std::slice::from_raw_parts_mut(self.payload_ptr(spot).as_ptr(), len as usize) }
    }

    /// Pointer to the payload of a frame at `spot` (for atomic-word copies).
    fn payload_ptr(&self, spot: Spot) -> NonNull<u8> {
        self.at(spot.at + FRAME)
    }

    fn put_header(&self, at: u32, len: u32, kind: Kind) {
        self.put_header_words(at, len, TAG | kind as u32);
    }

    fn put_header_words(&self, at: u32, len: u32, word: u32) {
        debug_assert!(at.is_multiple_of(FRAME) && at + FRAME <= self.cap);
        let (first, second) = (self.at(at).cast::<u32>(), self.at(at + 4).cast::<u32>());
        // SAFETY: `at` is an 8-aligned offset inside the data area (at most
        // cap - 8, since frames are 8-aligned), owned by the writer until
        // `tail` moves past it; an atomic-word store, so a peer racing on it
        // anyway is no data race.
        unsafe { copy::store(first.as_ptr(), len) };
        // SAFETY: as above, the header's second word.
        unsafe { copy::store(second.as_ptr(), word) };
    }

    /// Publishes a frame of `len` (at most what `spot` was found for).
    pub(crate) fn commit(&self, c: &mut WriteCursor, spot: Spot, len: u32, kind: Kind) {
        if spot.skip > 0 {
            self.put_header(c.tail & (self.cap - 1), spot.skip - FRAME, Kind::Pad);
        }
        self.put_header(spot.at, len, kind);
        c.tail = c.tail.wrapping_add(spot.skip + frame_size(len));
        let h = self.header();
        // Release: pairs with the reader's Acquire load of `tail`.
        h.tail.store(c.tail, Release);
        wake_if_sleeping(&h.tail, &h.reader_sleeping);
    }

    /// Writes one frame of `kind` holding `prefix` then `body`, waiting for
    /// room with `wait`.
    #[allow(clippy::too_many_arguments, reason = "one private helper of `send`")]
    fn put_frame<E>(
        &self,
        c: &mut WriteCursor,
        kind: Kind,
        prefix: &[u8],
        body: &[u8],
        wait: &mut impl FnMut(&RawRing, &mut WriteCursor, u32, bool) -> Result<(), E>,
        mark: &mut impl FnMut(),
        started: bool,
    ) -> Result<(), E>
    where
        E: From<RingError>,
    {
        let len = u32::try_from(prefix.len() + body.len()).expect("at most half the ring");
        let spot = loop {
            match self.spot(c, len)? {
                Some(spot) => break spot,
                None => wait(self, c, len, started)?,
            }
        };
        let out = self.payload_ptr(spot).as_ptr();
        // SAFETY: the spot was just found for `len` = prefix + body bytes on
        // this cursor: inside the data area and the writer's until the
        // commit; atomic-word copies (`copy`), so a peer scribbling there is
        // no data race.
        unsafe { copy::store_bytes(out, prefix) };
        // SAFETY: as above, the bytes after the prefix.
        unsafe { copy::store_bytes(out.wrapping_add(prefix.len()), body) };
        if matches!(kind, Kind::Whole | Kind::First) {
            mark();
        }
        self.commit(c, spot, len, kind);
        Ok(())
    }

    /// Sends `msg` whole, or streamed in parts when it is larger than a
    /// frame. `wait(ring, cursor, len, started)` is called when a frame of
    /// `len` does not fit; `started` says that part of the message is
    /// already out (the wait should then end only when there is room or
    /// the reader is gone). `mark()` runs just before the message's first
    /// frame is published.
    pub(crate) fn send<E>(
        &self,
        c: &mut WriteCursor,
        msg: &[u8],
        mut wait: impl FnMut(&RawRing, &mut WriteCursor, u32, bool) -> Result<(), E>,
        mut mark: impl FnMut(),
    ) -> Result<(), E>
    where
        E: From<RingError>,
    {
        let max = self.max_payload() as usize;
        if msg.len() <= max {
            return self.put_frame(c, Kind::Whole, &[], msg, &mut wait, &mut mark, false);
        }
        let total = (msg.len() as u64).to_le_bytes();
        let (first, mut rest) = msg.split_at(max - total.len());
        self.put_frame(c, Kind::First, &total, first, &mut wait, &mut mark, false)?;
        while !rest.is_empty() {
            let (part, more) = rest.split_at(rest.len().min(max));
            let kind = if more.is_empty() { Kind::Last } else { Kind::Middle };
            self.put_frame(c, kind, &[], part, &mut wait, &mut mark, true)?;
            rest = more;
        }
        Ok(())
    }

    /// Writes an `Abort` frame (ends a stream whose writer is gone).
    pub(crate) fn abort<E>(
        &self,
        c: &mut WriteCursor,
        mut wait: impl FnMut(&RawRing, &mut WriteCursor, u32, bool) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<RingError>,
    {
        self.put_frame(c, Kind::Abort, &[], &[], &mut wait, &mut || {}, true)
    }

    // ---- reader ----

    /// The next frame that is not padding, if one is published; `c.head`
    /// moves past padding (not yet handed back).
    pub(crate) fn peek_frame(&self, c: &mut ReadCursor) -> Result<Option<Frame>, RingError> {
        loop {
            let mut avail = self.used(c.cached_tail, c.head)?;
            if avail == 0 {
                // Acquire: pairs with the writer's Release store of `tail`.
                c.cached_tail = self.header().tail.load(Acquire);
                avail = self.used(c.cached_tail, c.head)?;
                if avail == 0 {
                    return Ok(None);
                }
            }
            let pos = c.head & (self.cap - 1);
            let (len, word) = self.read_header(pos);
            let kind = Kind::from_word(word).ok_or(RingError::Corrupted("bad frame tag"))?;
            let to_end = self.cap - pos;
            if len > self.cap {
                return Err(RingError::Corrupted("frame longer than the ring"));
            }
            let size = frame_size(len);
            if size > to_end || size > avail {
                return Err(RingError::Corrupted("frame overruns the ring or the published bytes"));
            }
            if kind == Kind::Pad {
                if size != to_end {
                    return Err(RingError::Corrupted("padding that does not reach the end of the ring"));
                }
                c.head = c.head.wrapping_add(size);
                continue;
            }
            return Ok(Some(Frame {
                kind,
                at: pos + FRAME,
                len,
                next: c.head.wrapping_add(size),
            }));
        }
    }

    fn read_header(&self, pos: u32) -> (u32, u32) {
        debug_assert!(pos.is_multiple_of(FRAME) && pos + FRAME <= self.cap);
        let (first, second) = (self.at(pos).cast::<u32>(), self.at(pos + 4).cast::<u32>());
        // SAFETY: `pos` is 8-aligned (positions are checked to be multiples
        // of 8) and at most cap - 8, inside the data area; the header was
        // published (Acquire above); an atomic-word load, so a peer racing
        // on it is no data race. Any bits are a valid u32 (checked by the
        // caller before use).
        let len = unsafe { copy::load(first.as_ptr()) };
        // SAFETY: as above, the header's second word.
        (len, unsafe { copy::load(second.as_ptr()) })
    }

    /// Whether a frame other than padding is published after `head` (for a
    /// sleeper's re-check; corruption counts as ready).
    pub(crate) fn has_frame(&self, head: u32) -> bool {
        let mut c = ReadCursor {
            head,
            cached_tail: head,
        };
        !matches!(self.peek_frame(&mut c), Ok(None))
    }

    /// Appends the payload of a frame from [`Self::peek_frame`] to `out`,
    /// from byte `from` on, copied through atomic words (the defensive path:
    /// sound whatever a peer writes meanwhile).
    fn copy_payload(&self, f: &Frame, from: u32, out: &mut Vec<u8>) {
        let from = from.min(f.len);
        let n = (f.len - from) as usize;
        let start = out.len();
        out.resize(start + n, 0);
        // SAFETY: peek_frame checked at + len <= cap: the range is inside
        // the data area; the copy is atomic-word loads into private memory.
        unsafe { copy::load_bytes(self.at(f.at + from).as_ptr(), &mut out[start..]) };
    }

    /// The payload of a frame from [`Self::peek_frame`], as a read loan:
    /// sound only while the writer keeps the protocol (it does not touch a
    /// published frame before `head` passes it); the copying path
    /// ([`Self::recv`]) is the defensive one.
    pub(crate) fn payload(&self, f: &Frame) -> &[u8] {
        let p = self.at(f.at);
        // SAFETY: peek_frame checked at + len <= cap and that the frame is
        // published; the writer does not touch it until `head` passes it.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), f.len as usize) }
    }

    /// Hands the bytes up to the end of `f` back to the writer.
    pub(crate) fn release(&self, c: &mut ReadCursor, f: &Frame) {
        self.release_to(c, f.next);
    }

    fn release_to(&self, c: &mut ReadCursor, next: u32) {
        c.head = next;
        let h = self.header();
        // Release: pairs with the writer's Acquire load of `head`.
        h.head.store(next, Release);
        wake_if_sleeping(&h.head, &h.writer_sleeping);
    }

    /// Hands back padding that `peek_frame` stepped over.
    pub(crate) fn release_padding(&self, c: &mut ReadCursor) {
        // Relaxed: our own index.
        if self.header().head.load(Relaxed) != c.head {
            self.release_to(c, c.head);
        }
    }

    /// Receives the next message into `out` (replacing its contents).
    ///
    /// `wait(ring, cursor, assembling)` is called when no frame is ready;
    /// `assembling` says that part of a streamed message was taken. It
    /// returns `Ok(true)` to look again, `Ok(false)` to drop the part taken
    /// (its writer is gone) and look again, or an error to stop (the part
    /// taken is then dropped). `mark()` runs just before the message's
    /// first frame is handed back.
    pub(crate) fn recv<E>(
        &self,
        c: &mut ReadCursor,
        out: &mut Vec<u8>,
        mut wait: impl FnMut(&RawRing, &mut ReadCursor, bool) -> Result<bool, E>,
        mut mark: impl FnMut(),
    ) -> Result<(), E>
    where
        E: From<RingError>,
    {
        out.clear();
        let mut total: Option<u64> = None;
        loop {
            let Some(f) = self.peek_frame(c)? else {
                self.release_padding(c);
                if !wait(self, c, total.is_some())? {
                    out.clear();
                    total = None;
                }
                continue;
            };
            match (f.kind, total) {
                (Kind::Whole, _) => {
                    out.clear();
                    self.copy_payload(&f, 0, out);
                    mark();
                    self.release(c, &f);
                    return Ok(());
                }
                (Kind::First, _) => {
                    let mut word = [0u8; 8];
                    if f.len >= 8 {
                        // SAFETY: at + len <= cap (peek_frame) and len >= 8;
                        // atomic-word loads into a private array.
                        unsafe { copy::load_bytes(self.at(f.at).as_ptr(), &mut word) };
                    }
                    let announced = Some(u64::from_le_bytes(word))
                        .filter(|_| f.len >= 8)
                        .filter(|&t| t > u64::from(self.max_payload()) && isize::try_from(t).is_ok())
                        .ok_or(RingError::Corrupted("bad length of a streamed message"))?;
                    out.clear();
                    // Reserve what arrives first; grow as parts come in (the
                    // announced total is a peer's word, not an allocation).
                    out.reserve(usize::try_from(announced).unwrap_or(usize::MAX).min(16 << 20));
                    self.copy_payload(&f, 8, out);
                    total = Some(announced);
                    mark();
                    self.release(c, &f);
                }
                (Kind::Middle | Kind::Last, Some(t)) => {
                    let len = u64::from(f.len);
                    if out.len() as u64 + len > t || (f.kind == Kind::Last && out.len() as u64 + len != t) {
                        return Err(
                            RingError::Corrupted("streamed parts do not add up to the announced length").into(),
                        );
                    }
                    self.copy_payload(&f, 0, out);
                    self.release(c, &f);
                    if f.kind == Kind::Last {
                        return Ok(());
                    }
                }
                (Kind::Abort, Some(_)) => {
                    out.clear();
                    total = None;
                    self.release(c, &f);
                }
                // Left by a reader or writer that died mid-message.
                (Kind::Middle | Kind::Last | Kind::Abort, None) => self.release(c, &f),
                (Kind::Pad, _) => unreachable!("peek_frame steps over padding"),
            }
        }
    }
}

/// Waits for `ready()`: spins, then sleeps on `word` in liveness slices
/// after raising `flag`; `gone(slice_over)` is asked before each sleep.
pub(crate) fn wait_until(
    word: &Word,
    flag: &Word,
    deadline: Option<Deadline>,
    ready: impl Fn() -> bool,
    mut gone: impl FnMut(bool) -> bool,
) -> Result<(), Stop> {
    let mut spins = shm_sync::park::spins();
    let mut slice_over = false;
    loop {
        // Relaxed: the futex compares against this value; `ready` reads
        // the word again with Acquire.
        let seen = word.load(Relaxed);
        if ready() {
            return Ok(());
        }
        if spins > 0 {
            spins -= 1;
            core::hint::spin_loop();
            continue;
        }
        if gone(slice_over) {
            return Err(Stop::Gone);
        }
        match sleep_on(word, seen, flag, deadline, &ready) {
            Slept::DeadlinePassed => return if ready() { Ok(()) } else { Err(Stop::Timeout) },
            slept => slice_over = slept == Slept::SliceOver,
        }
    }
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

    pub(crate) fn create(capacity: usize) -> Result<Self, SegmentError> {
        let cap = round_capacity(capacity)?;
        let seg = Segment::create(&Self::identity(), HEADER + cap as usize)?;
        let raw = Self::map(&seg, cap);
        // Relaxed: not shared with anyone yet.
        raw.header().capacity.store(cap, Relaxed);
        Ok(Self { seg, raw })
    }

    pub(crate) fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let cap = crate::ring::ring_capacity::<u8>(&seg, &Self::identity(), 64, |cap| cap.checked_add(HEADER))?;
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
        sys::futex_wake(&h.tail, u32::MAX);
        sys::futex_wake(&h.head, u32::MAX);
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
/// let (mut tx, mut rx) = shm_collections::bytes::channel(1024)?;
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
    let ring = Arc::new(ByteRing::create(capacity)?);
    Ok((ByteProducer::new(Arc::clone(&ring)), ByteConsumer::new(ring)))
}

/// The writing end of a byte ring. `Send`, not `Sync`.
pub struct ByteProducer {
    ring: Arc<ByteRing>,
    c: WriteCursor,
    claimed: u32,
}

/// The reading end of a byte ring. `Send`, not `Sync`.
pub struct ByteConsumer {
    ring: Arc<ByteRing>,
    c: ReadCursor,
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

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "test byte patterns")]
mod tests {
    use super::*;

    fn bytes_of(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }

    #[test]
    fn messages_keep_their_boundaries_across_wraps() {
        let (mut tx, mut rx) = channel(256).expect("ring");
        let mut out = Vec::new();
        for round in 0..200 {
            let len = round % 60;
            tx.try_send(&bytes_of(round, len)).expect("room");
            if round % 3 == 0 {
                tx.try_send(&[]).expect("empty messages are messages");
            }
            rx.try_recv(&mut out).expect("a message");
            assert_eq!(out, bytes_of(round, len));
            if round % 3 == 0 {
                rx.try_recv(&mut out).expect("the empty one");
                assert!(out.is_empty());
            }
        }
        assert_eq!(rx.try_recv(&mut out), Err(RingError::Empty));
    }

    #[test]
    fn full_too_large_and_loans() {
        let (mut tx, mut rx) = channel(64).expect("ring");
        assert_eq!(tx.max_frame(), 24);
        assert_eq!(tx.try_send(&[0; 25]), Err(RingError::TooLarge));
        tx.try_send(&[1; 24]).expect("one frame");
        tx.try_send(&[2; 24]).expect("two frames fill 64 bytes");
        assert_eq!(tx.try_send(&[]), Err(RingError::Full));
        {
            let view = rx.peek().expect("in place");
            assert_eq!(&*view, &[1; 24]);
        }
        let mut loan = tx.reserve(16).expect("room again");
        loan[..3].copy_from_slice(b"abc");
        loan.commit_len(3);
        let mut out = Vec::new();
        rx.recv(&mut out).expect("second");
        assert_eq!(out, [2; 24]);
        rx.recv(&mut out).expect("loaned");
        assert_eq!(out, b"abc");
        {
            let _loan = tx.reserve(8).expect("a loan dropped without commit sends nothing");
        }
        assert_eq!(rx.try_recv(&mut out), Err(RingError::Empty));
    }

    #[test]
    fn large_messages_stream_through_a_small_ring() {
        let (mut tx, mut rx) = channel(1024).expect("ring");
        // Under Miri, one streamed message (4096 > 1024) is enough.
        let sizes: &[usize] = if cfg!(miri) {
            &[0, 1, 503, 504, 505, 4096]
        } else {
            &[0, 1, 503, 504, 505, 4096, 100_000, 3 << 20]
        };
        std::thread::scope(|s| {
            s.spawn(move || {
                for (i, &n) in sizes.iter().enumerate() {
                    tx.send(&bytes_of(i, n)).expect("send");
                }
                tx.close();
            });
            let mut out = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                rx.recv(&mut out).expect("recv");
                assert_eq!(out.len(), n);
                assert!(out == bytes_of(i, n), "message {i} intact");
            }
            assert_eq!(rx.recv(&mut out), Err(RingError::Disconnected));
        });
    }

    #[test]
    fn timeouts_close_and_poll() {
        let (mut tx, mut rx) = channel(64).expect("ring");
        let mut out = Vec::new();
        assert_eq!(
            rx.recv_timeout(&mut out, Duration::from_millis(20)),
            Err(RingError::Empty)
        );
        assert!(!rx.poll(Some(Duration::from_millis(10))));
        tx.send(b"x").expect("send");
        assert!(rx.poll(Some(Duration::ZERO)));
        assert!(rx.poll(None), "poll consumes nothing");
        tx.send(&[0; 24]).expect("fill");
        assert_eq!(
            tx.send_timeout(&[0; 24], Duration::from_millis(20)),
            Err(RingError::Full)
        );
        tx.close();
        rx.recv(&mut out).expect("drains after close");
        assert_eq!(out, b"x");
        rx.recv(&mut out).expect("drains after close");
        assert_eq!(rx.recv(&mut out), Err(RingError::Disconnected));
        assert!(rx.poll(None), "a closed peer polls true");
        rx.close();
        assert_eq!(tx.try_send(b"y"), Err(RingError::Disconnected));
    }

    #[test]
    fn scribbled_frames_are_reported_and_nothing_moves() {
        let (mut tx, mut rx) = channel(128).expect("ring");
        tx.try_send(b"hello").expect("room");
        let raw = rx.ring.raw;
        // The first frame's two header words, as a peer could scribble them.
        let scribble = |len: u32, word: u32| raw.put_header_words(0, len, word);
        scribble(1000, TAG | Kind::Whole as u32);
        let mut out = Vec::new();
        assert!(matches!(rx.try_recv(&mut out), Err(RingError::Corrupted(_))));
        assert!(
            matches!(rx.try_recv(&mut out), Err(RingError::Corrupted(_))),
            "still there"
        );
        scribble(5, 0xdead_beef);
        assert!(matches!(rx.try_recv(&mut out), Err(RingError::Corrupted(_))));
        scribble(5, TAG | 0x4d);
        assert!(matches!(rx.try_recv(&mut out), Err(RingError::Corrupted(_))));
        // Restore: the message is intact.
        scribble(5, TAG | Kind::Whole as u32);
        rx.try_recv(&mut out).expect("intact");
        assert_eq!(out, b"hello");
        // A tail beyond the ring.
        raw.header().tail.store(4096, Relaxed);
        assert!(matches!(rx.try_recv(&mut out), Err(RingError::Corrupted(_))));
    }

    #[test]
    fn remnants_of_dead_readers_and_aborted_streams_are_skipped() {
        let (mut tx, mut rx) = channel(256).expect("ring");
        let raw = tx.ring.raw;
        tx.claim();
        let mut c = tx.c;
        let never =
            |_: &RawRing, _: &mut WriteCursor, _: u32, _: bool| -> Result<(), RingError> { Err(RingError::Full) };
        raw.put_frame(&mut c, Kind::Middle, &[], b"left", &mut { never }, &mut || {}, true)
            .expect("room");
        raw.put_frame(&mut c, Kind::Last, &[], b"over", &mut { never }, &mut || {}, true)
            .expect("room");
        raw.put_frame(
            &mut c,
            Kind::First,
            &200u64.to_le_bytes(),
            b"part",
            &mut { never },
            &mut || {},
            false,
        )
        .expect("room");
        raw.abort(&mut c, never).expect("room");
        raw.put_frame(&mut c, Kind::Whole, &[], b"real", &mut { never }, &mut || {}, false)
            .expect("room");
        tx.c = c;
        let mut out = Vec::new();
        rx.try_recv(&mut out).expect("the real message");
        assert_eq!(out, b"real");
    }
}

#[cfg(test)]
mod scribble_tests {
    use super::*;
    use crate::test_util::{Rng, bounded, scribble};

    /// A frame header's length word scribbled past the ring: reported, and
    /// never used as an offset.
    #[test]
    fn a_frame_length_past_the_ring_is_corrupted() {
        for bad in [u32::MAX, 1 << 20, 250, 57] {
            let (mut tx, mut rx) = channel(256).expect("ring");
            tx.try_send(&[7; 16]).expect("room");
            let data = rx.ring.raw.at(0).cast::<u32>().as_ptr();
            // SAFETY: the first frame header's length word, in the data
            // area; an atomic store, as every access to it is.
            unsafe { copy::store(data, bad) };
            let mut out = Vec::new();
            let r = rx.try_recv(&mut out);
            assert!(matches!(r, Err(RingError::Corrupted(_))), "len {bad}: {r:?}");
            assert!(matches!(rx.peek().map(|v| v.len()), Err(RingError::Corrupted(_))));
        }
    }

    /// Index words and frames scribbled, seeded: every non-blocking or
    /// timed operation returns, none hangs or panics.
    #[test]
    fn random_scribbles_never_hang() {
        let rounds = if cfg!(miri) { 4 } else { 300 };
        let t = Duration::from_millis(20);
        let mut rng = Rng(0x5851_f42d_4c95_7f2d);
        for round in 0..rounds {
            let (mut tx, mut rx) = channel(128).expect("ring");
            for i in 0..rng.below(6) {
                let _ = tx.try_send(&[u8::try_from(i).unwrap_or(0); 9]);
            }
            let mut out = Vec::new();
            let _ = rx.try_recv(&mut out);
            let seg = &tx.ring.seg;
            let (base, len) = (seg.payload().as_ptr().wrapping_add(128), seg.payload_len() - 128);
            // SAFETY: inside the payload (index lines and data), 128-aligned;
            // every access to it is atomic.
            unsafe { scribble(base, len, 1 + rng.below(4), &mut rng) };
            let seed = rng.next();
            bounded(&format!("round {round}"), move || {
                let mut r = Rng(seed | 1);
                let mut out = Vec::new();
                for _ in 0..8 {
                    let _ = match r.below(5) {
                        0 => rx.try_recv(&mut out),
                        1 => rx.recv_timeout(&mut out, t),
                        2 => tx.try_send(&[1; 12]),
                        3 => tx.send_timeout(&[2; 20], t),
                        _ => rx.peek().map(|v| assert!(v.len() <= 128)),
                    };
                }
            });
        }
    }
}
