//! The frame format and the raw ring: frames written, checked and read
//! in mapped memory, and the wait for room or data.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use shmproc_core::atomic::copy;
use shmproc_core::sys::Deadline;

use super::Fail;
use super::{FRAME, RingHeader, TAG, valid_capacity};
use crate::ring::{Slept, Word, sleep_on, wake_if_sleeping};

/// The object corruption reports name.
const OBJECT: &str = "byte ring";

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
    pub(crate) cap: u32,
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
    pub(super) fn at(&self, off: u32) -> NonNull<u8> {
        debug_assert!(off <= self.cap);
        // SAFETY: off <= cap: inside the data area or one past its end.
        unsafe { self.data.add(off as usize) }
    }

    fn used(&self, tail: u32, head: u32) -> Result<u32, Fail> {
        let used = tail.wrapping_sub(head);
        if used > self.cap || !used.is_multiple_of(FRAME) {
            return Err(Fail::corrupted(
                OBJECT,
                "tail - head",
                format_args!("a multiple of {FRAME} up to {}", self.cap),
                used,
            ));
        }
        Ok(used)
    }

    // ---- writer ----

    /// Room for a frame of `len` payload bytes now? `None` when full.
    pub(crate) fn spot(&self, c: &mut WriteCursor, len: u32) -> Result<Option<Spot>, Fail> {
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
    pub(crate) fn payload_ptr(&self, spot: Spot) -> NonNull<u8> {
        self.at(spot.at + FRAME)
    }

    fn put_header(&self, at: u32, len: u32, kind: Kind) {
        self.put_header_words(at, len, TAG | kind as u32);
    }

    pub(super) fn put_header_words(&self, at: u32, len: u32, word: u32) {
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
    pub(super) fn put_frame<E>(
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
        E: From<Fail>,
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
        E: From<Fail>,
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
        E: From<Fail>,
    {
        self.put_frame(c, Kind::Abort, &[], &[], &mut wait, &mut || {}, true)
    }

    // ---- reader ----

    /// The next frame that is not padding, if one is published; `c.head`
    /// moves past padding (not yet handed back).
    pub(crate) fn peek_frame(&self, c: &mut ReadCursor) -> Result<Option<Frame>, Fail> {
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
            let kind = Kind::from_word(word).ok_or_else(|| {
                Fail::corrupted(
                    OBJECT,
                    "frame tag",
                    format_args!("{TAG:#x} | 1..=6"),
                    format_args!("{word:#x}"),
                )
            })?;
            let to_end = self.cap - pos;
            if len > self.cap {
                return Err(Fail::corrupted(
                    OBJECT,
                    "frame length",
                    format_args!("at most {}", self.cap),
                    len,
                ));
            }
            let size = frame_size(len);
            if size > to_end || size > avail {
                return Err(Fail::corrupted(
                    OBJECT,
                    "frame size",
                    format_args!("at most {}", to_end.min(avail)),
                    size,
                ));
            }
            if kind == Kind::Pad {
                if size != to_end {
                    return Err(Fail::corrupted(OBJECT, "padding frame size", to_end, size));
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
        E: From<Fail>,
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
                    let found = u64::from_le_bytes(word);
                    let announced = Some(found)
                        .filter(|_| f.len >= 8)
                        .filter(|&t| t > u64::from(self.max_payload()) && isize::try_from(t).is_ok())
                        .ok_or_else(|| {
                            Fail::corrupted(
                                OBJECT,
                                "streamed message length",
                                format_args!("more than {} in a first frame of 8 bytes or more", self.max_payload()),
                                format_args!("{found} in a frame of {}", f.len),
                            )
                        })?;
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
                        return Err(Fail::corrupted(
                            OBJECT,
                            "streamed parts",
                            format_args!("{t} bytes in all"),
                            format_args!("{} so far", out.len() as u64 + len),
                        )
                        .into());
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

/// Waits for `ready()` (not at all past `deadline`): spins, then sleeps on `word` in liveness slices
/// after raising `flag`; `gone(slice_over)` is asked before each sleep, and
/// `gone(false)` (a close, cheap to ask) once more in the last look before
/// it.
pub(crate) fn wait_until(
    word: &Word,
    flag: &Word,
    deadline: Option<Deadline>,
    ready: impl Fn() -> bool,
    mut gone: impl FnMut(bool) -> bool,
) -> Result<(), Stop> {
    // A deadline already passed (`try_*`): one look, no spinning.
    if deadline.is_some_and(|d| d.has_passed()) {
        return if ready() { Ok(()) } else { Err(Stop::Timeout) };
    }
    let mut spins = shmproc_sync::park::spins();
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
        // `gone(false)`: the close of the other side, in the last look
        // before the futex call (see `sleep_on`).
        match sleep_on(word, seen, flag, deadline, || ready() || gone(false)) {
            Slept::DeadlinePassed => return if ready() { Ok(()) } else { Err(Stop::Timeout) },
            slept => slice_over = slept == Slept::SliceOver,
        }
    }
}
