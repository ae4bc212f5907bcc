//! A two-way channel of plain data between two processes: each end sends
//! one type and receives the other, and a request and its answer cross
//! between the processes on one cache line.
//!
//! # Why not two rings
//!
//! Two [`spsc`] rings make a duplex channel, and for streams
//! they are the right one. But a round trip over two rings moves two cache
//! lines (each ring's slot and index live on lines of their own), and on
//! this kind of machine a round trip that moves two lines costs about 1.5
//! times one that moves a single line back and forth: a line read and then
//! written by the same core travels once per turn, while two lines that
//! each have one writer and one reader each travel twice. So a duplex
//! channel also has a **mailbox line**: one cell per direction, both on the
//! same line. A message whose direction's ring is empty goes into its cell
//! when the cell is free; the answer goes into the other cell of the same
//! line. A request and its answer then cost exactly what the bare
//! cache-line ping-pong costs (see `benches`).
//!
//! # Algorithm
//!
//! Per direction, the sender keeps two counts: the ring's `tail` and
//! `mailed`, the messages it put in the cell. Its cell word holds
//! `mailed << 32 | tail` as of the message in the cell; the receiver's
//! `taken` word counts the cell messages it took. The receiver's next
//! message is the cell's when the cell holds message `taken + 1` and the
//! ring messages before it (`tail` of the cell word) were all popped;
//! otherwise it is the ring's next one. The sender uses the cell only when
//! the cell is free (`taken == mailed`) and the ring is drained as it last
//! saw it (so, in fact, drained); otherwise it pushes on the ring.
//!
//! The receiver reads the cell *after* it has seen that the ring holds a
//! message: a cell message that precedes that ring message was written
//! before it was pushed, so it is seen then, and taken first.
//!
//! A sender that knows the ring only from a stale copy of its head keeps
//! using the ring; it re-reads the head when it finds nothing to receive
//! (it is idle then), when the ring looks full, and every 64th ring message.
//!
//! # Sleeping
//!
//! The receiver of a direction sleeps on that direction's `bell` word,
//! after raising its `sleeping` flag and issuing the membarrier, exactly as
//! a ring's consumer sleeps on `tail` (`spsc`'s module docs). A sender, after
//! either kind of send, reads the flag after a compiler barrier; when it is
//! up, it bumps the bell (so that a sleeper that has not reached its futex
//! call yet does not sleep) and wakes. A sender waiting for room waits on
//! the ring as a ring's producer does: only a full ring makes it wait.
//!
//! # Dead peers and bad input
//!
//! Each end records its process in both rings when it first acts in a
//! process. A blocked receive checks every 100 ms that the sender lives;
//! what it published before dying is still delivered. A cell message is
//! published by the Release store of its word, after the payload: a sender
//! killed mid-write publishes nothing. Words read from the mailbox are
//! checked: a cell count that is neither `taken` nor `taken + 1`, a taken
//! count that is neither `mailed` nor `mailed - 1`, or a ring position
//! beyond the ring's, is [`Fault::Corrupted`], never used.
//!
//! The peer writes the mailbox line while we read it, so no reference
//! covers plain bytes of it: the mailbox is reached from the segment's raw
//! payload pointer, every field of the `Mailbox` is an atomic (the cells'
//! bytes included), and a cell's payload is copied in and out through
//! atomic words ([`shmproc_core::atomic::copy`]). A scribbled payload is a
//! wrong value, never a data race.
//!
//! # Memory ordering
//!
//! A cell's payload is published by the Release store of its word and
//! acquired by the receiver's Acquire load; the cell is handed back by the
//! Release store of `taken`, acquired by the sender before it writes the
//! payload again. Ring messages order themselves (`spsc`). A close bumps
//! the bell with a Release, acquired by the sleeper's load of the bell: a
//! receiver that waits for the bell to change from a bumped value sees the
//! close that bumped it.
//!
//! The loom models are in `loom_tests.rs`: under loom the mailbox is heap
//! memory (`crate::sync::Heap`) whose two cells are loom cells, so a
//! payload access the protocol does not order is a race loom reports.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

#[cfg(not(loom))]
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::sys::Deadline;
use shmproc_core::{
    Fault, RecvError, RecvTimeoutError, SegmentError, SendError, SendTimeoutError, ShmSafe, TryRecvError, TrySendError,
};
#[cfg(not(loom))]
use shmproc_core::{Segment, SegmentKind, TypeIdentity};

use crate::ring::spsc::{self, Consumer, Producer};
use crate::ring::{Receive, Slept, Word, load_slot, receive, sleep_on, store_slot, wake_sleeper};
use crate::ring::{Stop, full_or_stop};
use crate::sync::{self, AtomicU64};

/// Bytes of the mailbox segment: the mailbox line and the sleep line.
const MAIL_LEN: usize = 256;
/// Where the cells' payloads start in the mailbox line.
const CELLS: usize = 32;
/// The bytes of the line the cells must fit in to be used: a cache line.
const LINE: usize = 64;
/// A sender with a stale view of the ring re-reads its head every this
/// many ring messages.
const REFRESH_EVERY: u32 = 64;

/// The mailbox line (128 bytes, of which the first 64 are used), then the
/// sleep line. Direction 0 carries the first end's messages.
#[repr(C)]
#[cfg_attr(loom, derive(Default))]
struct Mailbox {
    /// Per direction: `mailed << 32 | ring tail` of the message in the
    /// cell; [`CLOSED`] in `mailed` once the sender closed.
    word: [AtomicU64; 2],
    /// Per direction: the cell messages the receiver took; [`CLOSED`] once
    /// the receiver closed.
    taken: [Word; 2],
    /// Per direction: the receiver sleeps (the bell value it saw, raised).
    /// On this line, which the sender reads anyway after each send.
    sleeping: [Word; 2],
    /// The two payloads, at offsets `CELLS..LINE` (see [`cells`]). Under
    /// loom they are the two loom cells of [`Mail`] instead. Never read or
    /// written through this field: the cells are copied in and out through
    /// atomic words at their own offsets (`Duplex::cell`). Declared as
    /// atomics so that a `&Mailbox` covers interior-mutable bytes only:
    /// the peer writes these bytes while we hold one.
    #[cfg(not(loom))]
    _cells: [AtomicU64; 12],
    /// Per direction: bumped by a sender that wakes the receiver.
    bell: [Word; 2],
    _pad1: [Word; 30],
}

/// The count bits of `mailed` and `taken` (counts wrap at 2^31).
const COUNT: u32 = (1 << 31) - 1;
/// The closed bit of `mailed` (the sender closed) and of `taken` (the
/// receiver closed).
const CLOSED: u32 = 1 << 31;

// Loom's atomics are larger: under loom the mailbox is a heap value.
#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Mailbox>() == MAIL_LEN);
    assert!(std::mem::offset_of!(Mailbox, _cells) == CELLS);
    assert!(std::mem::offset_of!(Mailbox, sleeping) == 24);
    assert!(std::mem::offset_of!(Mailbox, bell) == 128);
};

/// Where the payloads of direction 0 (`A`) and 1 (`B`) sit in the mailbox
/// line, or `None` when both do not fit in its first [`LINE`] bytes (the
/// channel then uses its rings alone).
const fn cells<A, B>() -> Option<[usize; 2]> {
    let a = CELLS.next_multiple_of(align_of::<A>());
    let b = (a + size_of::<A>()).next_multiple_of(align_of::<B>());
    if b + size_of::<B>() <= LINE { Some([a, b]) } else { None }
}

/// The mapped mailbox, shared by the end's handles in one process.
struct Mail {
    #[cfg(not(loom))]
    seg: Segment,
    /// The mailbox words, and one loom cell per direction standing in for
    /// the mailbox line (payloads at the same offsets).
    #[cfg(loom)]
    seg: sync::Heap<Mailbox, Line>,
}

/// Loom's stand-in for the mailbox line's bytes, aligned as the segment's
/// payload is.
#[cfg(loom)]
#[repr(C, align(128))]
struct Line([u8; LINE]);

// SAFETY: the mailbox is reached through atomics, and through cells that
// the protocol gives to one side at a time (module docs); what the cells
// hold is ShmSafe plain data.
#[cfg(loom)]
unsafe impl Send for Mail {}
// SAFETY: as above.
#[cfg(loom)]
unsafe impl Sync for Mail {}

impl Mail {
    #[cfg(loom)]
    fn header(&self) -> &Mailbox {
        &self.seg.header
    }

    /// The payload bytes at `offset` of the mailbox line, for one access
    /// the protocol gives us (direction `dir`'s cell); loom records it (as
    /// a write).
    #[cfg(loom)]
    fn cell(&self, dir: usize, offset: usize) -> NonNull<u8> {
        debug_assert!(dir < 2 && offset < LINE);
        // SAFETY: offset < LINE, inside the cell's Line.
        unsafe { self.seg.slot(dir).cast::<u8>().add(offset) }
    }
}

/// Creates a duplex channel with rings of at least `capacity` messages per
/// direction (rounded up to a power of two), and returns its two ends: the
/// first sends `A` and receives `B`, the second the reverse.
///
/// # Errors
///
/// [`SegmentError::InvalidSize`] for a zero or too large capacity, or a
/// zero-sized type; errors creating the segments.
///
/// # Examples
///
/// ```
/// use shmproc_collections::duplex;
///
/// let (mut client, mut server) = duplex::channel::<u64, u64>(16)?;
/// client.try_send(20).expect("room");
/// let x = server.try_recv().expect("a request");
/// server.try_send(x + 1).expect("room");
/// assert_eq!(client.try_recv(), Ok(21));
/// # Ok::<(), shmproc_core::SegmentError>(())
/// ```
pub fn channel<A: ShmSafe, B: ShmSafe>(capacity: usize) -> Result<Ends<A, B>, SegmentError> {
    let (ab_tx, ab_rx) = spsc::channel::<A>(capacity)?;
    let (ba_tx, ba_rx) = spsc::channel::<B>(capacity)?;
    #[cfg(not(loom))]
    let seg = Segment::create(&identity::<A, B>(), MAIL_LEN)?;
    #[cfg(loom)]
    let seg = sync::Heap::with_slots(Mailbox::default(), [Line([0; LINE]), Line([0; LINE])]);
    let mail = Arc::new(Mail { seg });
    let first = Duplex::new(0, Arc::clone(&mail), ab_tx, ba_rx);
    let second = Duplex::new(1, mail, ba_tx, ab_rx);
    Ok((first, second))
}

/// The two ends of a duplex channel: the first sends `A`, the second `B`.
pub type Ends<A, B> = (Duplex<A, B>, Duplex<B, A>);

/// A cell word's two halves: the sender's cell count and its ring tail.
#[allow(clippy::cast_possible_truncation, reason = "the two halves of the word")]
fn split(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// The mailbox's identity: direction 0 carries `A`, direction 1 `B`.
#[cfg(not(loom))]
fn identity<A, B>() -> TypeIdentity {
    TypeIdentity::of::<(A, B)>(SegmentKind::DUPLEX)
}

/// A mailbox word no legal history produces.
#[cold]
fn corrupted(what: &'static str, expected: impl fmt::Display, found: impl fmt::Display) -> Fault {
    Fault::corrupted("duplex channel", what, expected, found)
}

/// One end of a duplex channel: sends `S`, receives `R`. `Send`, not
/// `Sync`: one owner at a time; pass it to a child process as an argument.
///
/// Dropping an end does not close it: a child's copy is the same end, so
/// only [`Duplex::close`] (or the death of the last process using it) ends
/// the channel for the peer.
pub struct Duplex<S: ShmSafe, R: ShmSafe> {
    /// 0 for the first end, 1 for the second: our sending direction.
    side: usize,
    mail: Arc<Mail>,
    /// The mailbox, as `mail` maps it (one load less on every access): the
    /// segment's raw payload pointer, not one derived from a reference.
    #[cfg(not(loom))]
    base: NonNull<u8>,
    /// The capacity of both rings.
    cap: u32,
    tx: Producer<S>,
    rx: Consumer<R>,
    /// Payload offsets of our sending and receiving cells, if used.
    cells: Option<(usize, usize)>,
    /// Cell messages we sent (wrapping at 2^31).
    mailed: u32,
    /// Cell messages we took (wrapping at 2^31).
    taken: u32,
    /// This end was closed ([`CLOSED`]) or not (0).
    closed: u32,
    /// Ring messages sent since the last re-read of the ring's head.
    since_refresh: u32,
    /// The process that set up the counts above (0: none yet).
    claimed: u32,
    _t: PhantomData<(S, R)>,
}

// SAFETY: `base` points into the mapping that the `mail` field keeps alive
// (a Segment, Send and Sync); everything else is Send for ShmSafe S and R.
unsafe impl<S: ShmSafe, R: ShmSafe> Send for Duplex<S, R> {}

impl<S: ShmSafe, R: ShmSafe> fmt::Debug for Duplex<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Duplex")
            .field("side", &self.side)
            .field("capacity", &self.tx.capacity())
            .field("mailbox", &self.cells.is_some())
            .finish_non_exhaustive()
    }
}

/// What the receiving cell holds for us.
enum Cell<R> {
    /// Nothing new; whether the peer closed its end.
    Nothing(bool),
    /// The next message, taken.
    Took(R),
    /// A message that comes after ring messages not yet popped.
    AfterRing,
}

/// The wire form of an end: its side, the mailbox segment and both rings.
#[cfg(not(loom))]
#[derive(Serialize)]
#[serde(bound = "")]
struct WireRef<'a, S: ShmSafe, R: ShmSafe> {
    side: u8,
    mail: &'a Segment,
    tx: &'a Producer<S>,
    rx: &'a Consumer<R>,
}

#[cfg(not(loom))]
#[derive(Deserialize)]
#[serde(bound = "")]
struct Wire<S: ShmSafe, R: ShmSafe> {
    side: u8,
    mail: Segment,
    tx: Producer<S>,
    rx: Consumer<R>,
}

#[cfg(not(loom))]
impl<S: ShmSafe, R: ShmSafe> Serialize for Duplex<S, R> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        WireRef {
            side: u8::try_from(self.side).expect("0 or 1"),
            mail: &self.mail.seg,
            tx: &self.tx,
            rx: &self.rx,
        }
        .serialize(serializer)
    }
}

#[cfg(not(loom))]
impl<'de, S: ShmSafe, R: ShmSafe> Deserialize<'de> for Duplex<S, R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = Wire::<S, R>::deserialize(deserializer)?;
        let id = match w.side {
            0 => identity::<S, R>(),
            1 => identity::<R, S>(),
            _ => return Err(D::Error::custom("a duplex end's side is 0 or 1")),
        };
        w.mail.check_type(&id).map_err(D::Error::custom)?;
        if w.mail.payload_len() != MAIL_LEN {
            return Err(D::Error::custom(SegmentError::BadPayload {
                len: w.mail.payload_len() as u64,
                elem_size: MAIL_LEN as u64,
            }));
        }
        if w.tx.capacity() != w.rx.capacity() {
            return Err(D::Error::custom("a duplex end's rings differ in capacity"));
        }
        let mail = Arc::new(Mail { seg: w.mail });
        Ok(Self::new(usize::from(w.side), mail, w.tx, w.rx))
    }
}

mod ends;
#[cfg(not(loom))]
mod named;

#[cfg(not(loom))]
pub use crate::ring::spsc::OpenError;
#[cfg(not(loom))]
pub use named::{create_named, unlink};

// Segments and real threads: not under loom (see `loom_tests.rs`).
#[cfg(all(test, not(loom)))]
mod tests;
