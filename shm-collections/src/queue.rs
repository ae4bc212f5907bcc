//! Python's queues in shared memory: [`Queue`], [`JoinableQueue`] and
//! [`SimpleQueue`] of serde messages, any number of producers and
//! consumers in any number of processes.
//!
//! # Design
//!
//! One segment holds a [byte ring](crate::bytes) of framed messages and two
//! [`ProcessLock`]s: producers take the put lock to write a message, and
//! consumers the get lock to read one (Michael and Scott's two-lock queue
//! on a ring). Producers and consumers never wait for each other's lock,
//! only for room or for messages, and a put is one lock, one copy of the
//! serialised bytes and one index store. Items are serialised with
//! postcard in the caller's thread before the lock is taken, so an item
//! that cannot be serialised is an error of that `put`, never a lost
//! message (Python's queue pickles later, in a feeder thread).
//!
//! # Dead processes
//!
//! - A process killed while holding a lock: the next taker gets the lock
//!   within a liveness slice ([`ProcessLock`]) and repairs what the dead
//!   holder left. A message is published by one index store, so a producer
//!   killed while writing never publishes half a message; a message whose
//!   streaming it had started is ended by an `Abort` frame, and readers
//!   drop the part they hold. The message counts (`qsize`, `maxsize`,
//!   `JoinableQueue`'s unfinished tasks) are bumped just before the
//!   publishing store with a note of the index; a taker that finds the
//!   note and an unmoved index takes the bump back. Consumers do the same
//!   with the read index: a consumer killed before handing a message back
//!   leaves it to the next consumer, so every published message is taken
//!   exactly once. A consumer copies and deserialises a message before it
//!   hands it back (one index store), so the only window in which a killed
//!   consumer takes a committed message with it is the return from `get`
//!   itself, after that store. Messages larger than half the ring are the
//!   exception: their parts are handed back as they are read, so one is
//!   lost with a consumer killed while reading it.
//! - A blocked `get` (or `put`) wakes every liveness slice and checks that
//!   some other process that uses the queue still runs. Processes register
//!   in the segment when they create or receive the queue or first use it.
//!   The call also waits on while a handle is on its way to a child (it
//!   was serialised and not yet received) or while the caller has running
//!   children (a forked child may not have used the queue yet). Otherwise,
//!   when every other registered process is dead, the call returns
//!   [`QueueError::Disconnected`]. A queue used only by the threads of one
//!   process is never disconnected; threads of a process whose peer
//!   processes all died are (the queue cannot tell threads apart).
//!
//! # Bad input
//!
//! The ring checks every frame it reads; the counts are clamped; a message
//! that does not deserialise is an error for that message only.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::fence;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shm_core::sys::{self, Deadline};
use shm_core::{Segment, SegmentError, SegmentKind, TypeIdentity};
use shm_sync::ProcessLock;

use crate::bytes::{Kind, RawRing, ReadCursor, Stop, WriteCursor, round_capacity, valid_capacity, wait_until};
use crate::ring::{HEADER, RingError, Word};

/// Bytes of ring a queue gets unless told otherwise (pages are only used
/// as messages reach them).
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Processes a queue remembers for its liveness checks; past that, blocked
/// calls can no longer tell that every peer died and only time out.
pub const MAX_PEERS: usize = 64;
/// How long a non-blocking call waits for another process's put or get in
/// progress before it reports `Full`/`Empty`.
pub const NOWAIT_LOCK: Duration = Duration::from_millis(10);

/// Words of one process-local flag (not shared memory).
#[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
type LocalWord = std::sync::atomic::AtomicU32;

#[repr(C)]
struct QueueHeader {
    // Line 0: written once or rarely.
    maxsize: Word,
    closed: Word,
    joinable: Word,
    overflow: Word,
    /// Handles serialised for another process and not yet received.
    in_flight: Word,
    _pad0: [Word; 27],
    // Line 1: producers, under the put lock.
    put_lock: ProcessLock,
    puts: Word,
    put_head: Word,
    stream_open: Word,
    put_pending: Word,
    put_pending_tail: Word,
    /// `puts` before the pending put counted itself: what recovery puts
    /// back (a holder killed between setting `put_pending` and counting
    /// must not be taken back twice).
    put_pending_puts: Word,
    _pad1: [Word; 24],
    // Line 2: consumers, under the get lock.
    get_lock: ProcessLock,
    gets: Word,
    get_tail: Word,
    get_pending: Word,
    get_pending_head: Word,
    /// `gets` before the pending get counted itself (as `put_pending_puts`).
    get_pending_gets: Word,
    _pad2: [Word; 25],
    // Line 3: JoinableQueue.
    unfinished: Word,
    join_waiters: Word,
    _pad3: [Word; 30],
    // Lines 4-5.
    peers: [Word; MAX_PEERS],
}

/// Bytes before the ring header.
const QUEUE_HEADER: usize = 768;
const _: () = {
    assert!(size_of::<QueueHeader>() == QUEUE_HEADER);
    assert!(std::mem::offset_of!(QueueHeader, put_lock) == 128);
    assert!(std::mem::offset_of!(QueueHeader, get_lock) == 256);
    assert!(std::mem::offset_of!(QueueHeader, unfinished) == 384);
};

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// No room (non-blocking put, or the timeout passed): Python's `queue.Full`.
    #[error("the queue is full")]
    Full,
    /// Nothing to get (non-blocking get, or the timeout passed): Python's `queue.Empty`.
    #[error("the queue is empty")]
    Empty,
    /// The queue was closed (put), or closed and drained (get).
    #[error("the queue is closed")]
    Closed,
    /// Every other process that used the queue died, and nothing is left
    /// to get (or no one is left to make room).
    #[error("every other process using the queue has died")]
    Disconnected,
    /// The item could not be serialised; nothing was sent.
    #[error("the item could not be serialised: {0}")]
    Serialize(String),
    /// The message could not be deserialised into the item type; it was
    /// taken off the queue.
    #[error("a message could not be deserialised: {0}")]
    Deserialize(String),
    /// `task_done` was called more times than items were put.
    #[error("task_done() called too many times")]
    TooManyTaskDone,
    /// The shared state is impossible: a peer wrote over it.
    #[error("corrupted queue: {0}")]
    Corrupted(&'static str),
}

impl From<RingError> for QueueError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::Full => Self::Full,
            RingError::Empty => Self::Empty,
            RingError::Disconnected => Self::Disconnected,
            RingError::Corrupted(what) => Self::Corrupted(what),
            _ => Self::Corrupted("unexpected ring state"),
        }
    }
}

/// A put that failed, with the item handed back.
pub struct PutError<T> {
    /// Why.
    pub kind: QueueError,
    /// The item that was not put.
    pub item: T,
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl<T> std::error::Error for PutError<T> {}

thread_local! {
    /// Serialised bytes of the item being put (reused between calls).
    static OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// Bytes of the message being got.
    static IN: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Most bytes a put serialises straight into the ring; larger items go
/// through a buffer first.
const IN_PLACE: u32 = 120;

/// What a put writes.
enum Payload<'a> {
    /// Serialised bytes.
    Bytes(&'a [u8]),
    /// Serialises into the ring in place (at most [`IN_PLACE`] bytes);
    /// returns the length, or `None` when the item does not fit.
    InPlace(&'a mut dyn FnMut(&mut [u8]) -> Option<usize>),
}

/// The mapped queue, shared by the handles of one process.
struct QueueShared {
    seg: Segment,
    hdr: NonNull<QueueHeader>,
    raw: RawRing,
    /// The process that last registered through this mapping.
    registered: LocalWord,
}

// SAFETY: shared memory reached through atomics, and frames the ring
// protocol gives to one lock holder at a time.
unsafe impl Send for QueueShared {}
// SAFETY: as above.
unsafe impl Sync for QueueShared {}

/// Unlocks a [`ProcessLock`] when dropped.
struct Unlock<'a>(&'a ProcessLock);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

impl QueueShared {
    fn create(id: &TypeIdentity, maxsize: usize, capacity: usize, joinable: bool) -> Result<Self, SegmentError> {
        let cap = round_capacity(capacity)?;
        let maxsize =
            u32::try_from(maxsize)
                .ok()
                .filter(|&m| m < i32::MAX as u32)
                .ok_or(SegmentError::InvalidSize {
                    requested: maxsize as u64,
                    reason: "maxsize is below 2^31 (0: unbounded)",
                })?;
        let seg = Segment::create(id, QUEUE_HEADER + HEADER + cap as usize)?;
        let q = Self::map(seg, cap);
        let h = q.header();
        // Relaxed: the segment is not shared with anyone yet.
        h.maxsize.store(maxsize, Relaxed);
        h.joinable.store(u32::from(joinable), Relaxed);
        q.raw.header().capacity.store(cap, Relaxed);
        sys::membarrier_register();
        Ok(q)
    }

    fn attach(seg: Segment, id: &TypeIdentity) -> Result<Self, SegmentError> {
        seg.check_type(id)?;
        let len = seg.payload_len();
        let bad = SegmentError::BadPayload {
            len: len as u64,
            elem_size: 1,
        };
        if len < QUEUE_HEADER + HEADER {
            return Err(bad);
        }
        // SAFETY: the payload holds both headers (checked above).
        let cap_word = unsafe { seg.payload().add(QUEUE_HEADER) }.cast::<Word>();
        // SAFETY: 128-aligned, inside the payload; an atomic accepts any bits.
        let cap_word = unsafe { cap_word.as_ref() };
        // Relaxed: written once before the queue was shared.
        let cap = cap_word.load(Relaxed);
        if !valid_capacity(cap) || QUEUE_HEADER + HEADER + cap as usize != len {
            return Err(bad);
        }
        Ok(Self::map(seg, cap))
    }

    fn map(seg: Segment, cap: u32) -> Self {
        let base = seg.payload();
        // SAFETY: the payload is QUEUE_HEADER + HEADER + cap bytes (created
        // so, or checked in `attach`): the offset is inside it.
        let ring = unsafe { base.add(QUEUE_HEADER) };
        // SAFETY: as above.
        let data = unsafe { base.add(QUEUE_HEADER + HEADER) };
        // SAFETY: 128-aligned header then cap bytes, kept mapped by `seg`
        // for as long as the RawRing (both in QueueShared).
        let raw = unsafe { RawRing::new(ring, data, cap) };
        Self {
            hdr: base.cast(),
            raw,
            seg,
            registered: LocalWord::new(0),
        }
    }

    fn header(&self) -> &QueueHeader {
        // SAFETY: the payload starts with a QueueHeader (see `map`); all of
        // its fields are atomics or padding, valid for any bits.
        unsafe { self.hdr.as_ref() }
    }

    fn maxsize(&self) -> u32 {
        // Relaxed: written once at creation.
        self.header().maxsize.load(Relaxed)
    }

    fn joinable(&self) -> bool {
        // Relaxed: written once at creation.
        self.header().joinable.load(Relaxed) != 0
    }

    fn closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.header().closed.load(Acquire) != 0
    }

    /// Names this process in the peer table (once per process).
    #[inline]
    fn register(&self) {
        let me = sys::cached_pid();
        // Relaxed: a process-local cache.
        if self.registered.load(Relaxed) != me {
            self.register_slow(me);
        }
    }

    #[cold]
    fn register_slow(&self, me: u32) {
        sys::membarrier_register();
        let h = self.header();
        // Relaxed throughout: pids for liveness checks only.
        let known = h.peers.iter().any(|p| p.load(Relaxed) == me);
        let placed = known
            || h.peers
                .iter()
                .any(|p| p.compare_exchange(0, me, Relaxed, Relaxed).is_ok())
            || h.peers.iter().any(|p| {
                let pid = p.load(Relaxed);
                pid != 0 && !crate::sync::task_alive(pid) && p.compare_exchange(pid, me, Relaxed, Relaxed).is_ok()
            });
        if !placed {
            h.overflow.store(1, Relaxed);
        }
        self.registered.store(me, Relaxed);
    }

    /// Whether some other process might still put or get: a registered
    /// one that runs, a handle on its way to another process, a running
    /// child of ours (other than the fork server), a full table, or a queue
    /// no other process ever used. Reads `/proc`.
    fn others_alive(&self) -> bool {
        let me = sys::cached_pid();
        let h = self.header();
        // Relaxed: counts, pids and a flag for liveness checks.
        if h.overflow.load(Relaxed) != 0 || h.in_flight.load(Relaxed) != 0 {
            return true;
        }
        let mut others = false;
        for p in &h.peers {
            let pid = p.load(Relaxed);
            if pid != 0 && pid != me {
                others = true;
                if crate::sync::task_alive(pid) {
                    return true;
                }
            }
        }
        if !others {
            return true;
        }
        let server = shm_core::forkserver_pid();
        sys::live_children().is_none_or(|kids| kids.iter().any(|&k| Some(k) != server))
    }

    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Relaxed: a count for liveness checks; the receiver takes it back
        // once registered.
        self.header().in_flight.fetch_add(1, Relaxed);
        self.seg.serialize(serializer)
    }

    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D, id: &TypeIdentity) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(deserializer)?;
        let shared = Self::attach(seg, id).map_err(shm_core::handle::decode_error)?;
        shared.register();
        // Relaxed: as in `serialize`; never below zero, whatever a peer wrote.
        let _ = shared
            .header()
            .in_flight
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        Ok(shared)
    }

    /// Whether the producer streaming a message is gone (dead, or it let
    /// go of the put lock with the stream unfinished).
    fn streamer_gone(&self) -> bool {
        let holder = self.header().put_lock.holder();
        // Acquire: with the Relaxed read of the lock word above, pairs with
        // the Release of its unlock, so the frames it published before
        // unlocking are seen by the caller's next look.
        fence(Acquire);
        holder.is_none_or(|pid| pid != sys::cached_pid() && !crate::sync::task_alive(pid))
    }

    /// Repairs what a producer killed under the put lock left.
    fn recover_put(&self) {
        let h = self.header();
        let rh = self.raw.header();
        // Relaxed: we hold the put lock; the dead holder's stores are
        // complete (it is dead) and the lock's Acquire take ordered us
        // after what it released.
        if h.put_pending.load(Relaxed) != 0 {
            if rh.tail.load(Relaxed) == h.put_pending_tail.load(Relaxed) {
                // Perhaps counted, never published: the count as it was
                // before (whether or not the holder got to count).
                h.puts.store(h.put_pending_puts.load(Relaxed), Relaxed);
                if self.joinable() {
                    let _ = h.unfinished.fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
                }
            }
            h.put_pending.store(0, Relaxed);
        }
        // Acquire: as in `RawRing::spot`; the dead holder's cached copy of
        // `head` may be older than the `tail` it published.
        h.put_head.store(rh.head.load(Acquire), Relaxed);
    }

    /// Repairs what a consumer killed under the get lock left.
    fn recover_get(&self) {
        let h = self.header();
        let rh = self.raw.header();
        // Relaxed: as in `recover_put`, for the get lock.
        if h.get_pending.load(Relaxed) != 0 {
            if rh.head.load(Relaxed) == h.get_pending_head.load(Relaxed) {
                // Perhaps counted, never handed back: the count as it was
                // before, and the next get takes the message.
                h.gets.store(h.get_pending_gets.load(Relaxed), Relaxed);
            }
            h.get_pending.store(0, Relaxed);
        }
        // Acquire: pairs with producers' Release store of `tail`.
        h.get_tail.store(rh.tail.load(Acquire), Relaxed);
    }

    fn qsize(&self) -> u32 {
        let h = self.header();
        // Acquire: pairs with the holders' unlocks; a snapshot.
        let n = h.puts.load(Acquire).wrapping_sub(h.gets.load(Acquire));
        // A get counts its message as the put's count is being taken back
        // (recovery), so a moment's -1 reads as 0.
        if n > i32::MAX as u32 { 0 } else { n }
    }

    /// Puts a message; false when a [`Payload::InPlace`] did not fit (or
    /// found no room at once) and nothing was sent.
    fn put_bytes(&self, msg: Payload<'_>, deadline: Option<Deadline>) -> Result<bool, QueueError> {
        self.register();
        if self.closed() {
            return Err(QueueError::Closed);
        }
        let h = self.header();
        let died = h.put_lock.lock_until(deadline).ok_or(QueueError::Full)?;
        let _unlock = Unlock(&h.put_lock);
        if died {
            self.recover_put();
        }
        let rh = self.raw.header();
        let gone = |slice_over: bool| self.closed() || (slice_over && !self.others_alive());
        let stop = |stop: Stop| match stop {
            Stop::Timeout => QueueError::Full,
            Stop::Gone if self.closed() => QueueError::Closed,
            Stop::Gone => QueueError::Disconnected,
        };
        let maxsize = self.maxsize();
        if maxsize != 0 {
            // Relaxed: ours, under the put lock.
            let puts = h.puts.load(Relaxed);
            // Acquire: pairs with consumers' unlocks of the get lock.
            // A count below zero (a peer scribbled on `gets`, or a bump
            // being taken back) reads as an empty queue, as in `qsize`.
            let room = || {
                let n = puts.wrapping_sub(h.gets.load(Acquire));
                n < maxsize || n > i32::MAX as u32
            };
            wait_until(&rh.head, &rh.writer_sleeping, deadline, room, gone).map_err(stop)?;
        }
        // Relaxed: only put-lock holders write `tail` and the cached head.
        let tail = rh.tail.load(Relaxed);
        let mut cached_head = h.put_head.load(Relaxed);
        if tail.wrapping_sub(cached_head) > self.raw.capacity() {
            // A cache a peer scribbled on: the real index decides.
            // Acquire: as in `RawRing::spot`.
            cached_head = rh.head.load(Acquire);
        }
        let mut c = WriteCursor { tail, cached_head };
        let wait = |raw: &RawRing, c: &mut WriteCursor, len: u32, started: bool| {
            let tail = c.tail;
            let deadline = if started { None } else { deadline };
            wait_until(
                &rh.head,
                &rh.writer_sleeping,
                deadline,
                || raw.has_room(tail, len),
                gone,
            )
            .map_err(stop)
        };
        let streamed = matches!(msg, Payload::Bytes(b) if b.len() > self.raw.max_payload() as usize);
        let joinable = self.joinable();
        let mark = || {
            // Relaxed: under the put lock; the publishing Release store of
            // `tail` that follows carries these to consumers.
            // A load and a store, not a read-modify-write: only put-lock
            // holders write `puts`. The count before is recorded first, so
            // a kill anywhere in here is undone exactly by `recover_put`.
            let puts = h.puts.load(Relaxed);
            h.put_pending_puts.store(puts, Relaxed);
            h.put_pending_tail.store(rh.tail.load(Relaxed), Relaxed);
            h.put_pending.store(1, Relaxed);
            h.puts.store(puts.wrapping_add(1), Relaxed);
            if joinable {
                // SeqCst: `join`'s Dekker pair (see `task_done`).
                h.unfinished.fetch_add(1, SeqCst);
            }
            if streamed {
                h.stream_open.store(1, Relaxed);
            }
        };
        // Relaxed: ours, under the put lock.
        let stream_open = h.stream_open.load(Relaxed) != 0;
        let result = match msg {
            // The general path ends a dead producer's stream first.
            Payload::InPlace(_) if stream_open => Ok(false),
            Payload::InPlace(write) => {
                let most = IN_PLACE.min(self.raw.max_payload());
                self.raw.spot(&mut c, most).map_err(QueueError::from).map(|spot| {
                    let Some(spot) = spot else { return false };
                    // SAFETY: the spot was just found for `most` bytes on this
                    // cursor, and nothing was committed since. A write loan
                    // over shared memory: no reader looks at these bytes
                    // before the commit (a reader that scribbles on them
                    // breaks the protocol; the item is then garbage to the
                    // consumer, which validates it when it deserialises).
                    let room = unsafe { self.raw.payload_mut(spot, most) };
                    let Some(len) = write(room).and_then(|n| u32::try_from(n).ok()).filter(|&n| n <= most) else {
                        return false;
                    };
                    mark();
                    self.raw.commit(&mut c, spot, len, Kind::Whole);
                    true
                })
            }
            Payload::Bytes(bytes) => {
                let aborted = if stream_open {
                    self.raw.abort(&mut c, wait).map(|()| h.stream_open.store(0, Relaxed))
                } else {
                    Ok(())
                };
                aborted
                    .and_then(|()| self.raw.send(&mut c, bytes, wait, mark))
                    .map(|()| true)
            }
        };
        // Relaxed: under the put lock, released by the unlock.
        h.put_pending.store(0, Relaxed);
        if result.is_ok() && streamed {
            h.stream_open.store(0, Relaxed);
        }
        h.put_head.store(c.cached_head, Relaxed);
        result
    }

    /// Takes the next message, copied into `out`, and returns what
    /// `decode` makes of it. A whole message is copied and decoded before
    /// its frame is handed back to the ring (the commit), so a consumer
    /// killed anywhere in here before that store leaves the message to the
    /// next one. A streamed message (larger than half the ring) is handed
    /// back part by part as it is read, so one is lost with a consumer
    /// killed while reading it.
    fn get_with<R>(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Deadline>,
        decode: impl FnOnce(&[u8]) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        self.register();
        let h = self.header();
        let Some(died) = h.get_lock.lock_until(deadline) else {
            return Err(if self.closed() && self.qsize() == 0 {
                QueueError::Closed
            } else {
                QueueError::Empty
            });
        };
        let _unlock = Unlock(&h.get_lock);
        if died {
            self.recover_get();
        }
        let rh = self.raw.header();
        // Relaxed: only get-lock holders write `head` and the cached tail.
        let head = rh.head.load(Relaxed);
        let mut cached_tail = h.get_tail.load(Relaxed);
        if cached_tail.wrapping_sub(head) > self.raw.capacity() {
            // A cache a peer scribbled on: the real index decides.
            // Acquire: pairs with producers' Release store of `tail`.
            cached_tail = rh.tail.load(Acquire);
        }
        let mut c = ReadCursor { head, cached_tail };
        let wait = |raw: &RawRing, c: &mut ReadCursor, assembling: bool| {
            let head = c.head;
            let ready = || raw.has_frame(head);
            if assembling {
                // The rest of a streamed message follows whatever the
                // deadline, unless its producer is gone.
                let gone = |slice_over: bool| slice_over && self.streamer_gone();
                return Ok(wait_until(&rh.tail, &rh.reader_sleeping, None, ready, gone).is_ok() || raw.has_frame(head));
            }
            let gone = |slice_over: bool| self.closed() || (slice_over && !self.others_alive());
            match wait_until(&rh.tail, &rh.reader_sleeping, deadline, ready, gone) {
                Ok(()) => Ok(true),
                Err(_) if raw.has_frame(head) => Ok(true),
                Err(Stop::Timeout) => Err(QueueError::Empty),
                Err(Stop::Gone) if self.closed() => Err(QueueError::Closed),
                Err(Stop::Gone) => Err(QueueError::Disconnected),
            }
        };
        let mut wait = wait;
        let mut mark = || {
            // Relaxed: under the get lock; the Release store of `head` that
            // follows carries these.
            // Only get-lock holders write `gets`; the count before is
            // recorded first, as in `put_bytes`.
            let gets = h.gets.load(Relaxed);
            h.get_pending_gets.store(gets, Relaxed);
            h.get_pending_head.store(rh.head.load(Relaxed), Relaxed);
            h.get_pending.store(1, Relaxed);
            h.gets.store(gets.wrapping_add(1), Relaxed);
        };
        let result = loop {
            match self.raw.peek_frame(&mut c) {
                Err(e) => break Err(e.into()),
                Ok(Some(f)) if f.kind == Kind::Whole => {
                    // Copy, decode, then commit: the order that makes a
                    // kill before the `head` store harmless.
                    out.clear();
                    out.extend_from_slice(self.raw.payload(&f));
                    let decoded = decode(out);
                    mark();
                    self.raw.release(&mut c, &f);
                    break decoded;
                }
                // A streamed message: its parts go back as they are read.
                Ok(Some(f)) if f.kind == Kind::First => {
                    break self
                        .raw
                        .recv(&mut c, out, &mut wait, &mut mark)
                        .and_then(|()| decode(out));
                }
                // Parts left by a consumer or producer that died mid-message.
                Ok(Some(f)) => self.raw.release(&mut c, &f),
                Ok(None) => {
                    self.raw.release_padding(&mut c);
                    if let Err(e) = wait(&self.raw, &mut c, false) {
                        break Err(e);
                    }
                }
            }
        };
        // Relaxed: under the get lock, released by the unlock.
        h.get_pending.store(0, Relaxed);
        h.get_tail.store(c.cached_tail, Relaxed);
        result
    }

    fn close(&self) {
        // Release: pairs with the Acquire in `closed`.
        self.header().closed.store(1, Release);
        let rh = self.raw.header();
        sys::futex_wake(&rh.tail, u32::MAX);
        sys::futex_wake(&rh.head, u32::MAX);
    }
}

/// A multi-producer multi-consumer queue of serde messages in shared
/// memory (Python's `multiprocessing.Queue`).
///
/// Clones are the same queue; so is a child's copy passed as an argument.
/// `maxsize` bounds the number of items (0: unbounded, as in Python); the
/// ring's bytes bound them too ([`DEFAULT_CAPACITY`], or
/// [`Queue::with_capacity`]); an item larger than half the ring is streamed
/// through it in parts.
///
/// # Examples
///
/// ```
/// use shm_collections::queue::{Queue, QueueError};
///
/// let q = Queue::<String>::new(2)?;
/// q.put("a".into()).expect("room");
/// q.put_nowait("b".into()).expect("room");
/// assert_eq!(q.put_nowait("c".into()).unwrap_err().kind, QueueError::Full);
/// assert_eq!(q.qsize(), 2);
/// assert_eq!(q.get()?, "a");
/// assert_eq!(q.get_nowait()?, "b");
/// assert_eq!(q.get_nowait(), Err(QueueError::Empty));
/// q.close();
/// assert_eq!(q.put("d".into()).unwrap_err().kind, QueueError::Closed);
/// assert_eq!(q.get(), Err(QueueError::Closed));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    shared: Arc<QueueShared>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.shared.qsize())
            .field("maxsize", &self.shared.maxsize())
            .field("capacity", &self.shared.raw.capacity())
            .finish()
    }
}

fn ser<T: Serialize>(item: &T) -> Result<Vec<u8>, QueueError> {
    let mut buf = OUT.take();
    buf.clear();
    postcard::to_extend(item, buf).map_err(|e| QueueError::Serialize(e.to_string()))
}

/// Deserialises a whole message: bytes left over mean another type.
pub(crate) fn de<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, QueueError> {
    match postcard::take_from_bytes(bytes) {
        Ok((item, [])) => Ok(item),
        Ok((_, rest)) => Err(QueueError::Deserialize(format!("{} bytes left over", rest.len()))),
        Err(e) => Err(QueueError::Deserialize(e.to_string())),
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<T>(SegmentKind::QUEUE)
    }

    /// A new empty queue holding at most `maxsize` items (0: no limit but
    /// the ring's [`DEFAULT_CAPACITY`] bytes).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made, or `maxsize` is 2^31
    /// or more.
    pub fn new(maxsize: usize) -> Result<Self, SegmentError> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new queue whose ring holds `bytes` bytes (rounded up to a power of
    /// two).
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`], and for a zero or too large `bytes`.
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Self, SegmentError> {
        Self::make(maxsize, bytes, false)
    }

    fn make(maxsize: usize, bytes: usize, joinable: bool) -> Result<Self, SegmentError> {
        let shared = QueueShared::create(&Self::identity(), maxsize, bytes, joinable)?;
        shared.register();
        Ok(Self {
            shared: Arc::new(shared),
            _t: PhantomData,
        })
    }

    fn put_until(&self, item: T, deadline: Option<Deadline>) -> Result<(), PutError<T>> {
        // Small items are serialised straight into the ring (postcard's
        // slice writer is also several times faster than its Vec one).
        let mut in_place = |room: &mut [u8]| postcard::to_slice(&item, room).ok().map(|b| b.len());
        match self.shared.put_bytes(Payload::InPlace(&mut in_place), deadline) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(kind) => return Err(PutError { kind, item }),
        }
        let bytes = match ser(&item) {
            Ok(b) => b,
            Err(kind) => return Err(PutError { kind, item }),
        };
        let result = self.shared.put_bytes(Payload::Bytes(&bytes), deadline);
        OUT.set(bytes);
        result.map(drop).map_err(|kind| PutError { kind, item })
    }

    /// Puts an item, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`], [`QueueError::Serialize`] (nothing sent),
    /// [`QueueError::Disconnected`] when the queue is full and every other
    /// process using it died, [`QueueError::Corrupted`]; the item is handed
    /// back.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, None)
    }

    /// Puts an item, waiting for room up to `timeout` (an item streamed in
    /// parts, once started, is finished).
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] on timeout, as for [`Queue::put`] otherwise.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Deadline::after(timeout)))
    }

    /// Puts an item if there is room now (waiting at most [`NOWAIT_LOCK`]
    /// for another process's put in progress).
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`], as for [`Queue::put`] otherwise.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Deadline::after(NOWAIT_LOCK)))
    }

    fn get_until(&self, deadline: Option<Deadline>) -> Result<T, QueueError> {
        let mut buf = IN.take();
        let result = self.shared.get_with(&mut buf, deadline, de::<T>);
        IN.set(buf);
        result
    }

    /// Gets the oldest item, waiting as long as needed.
    ///
    /// The message is copied and deserialised before it is taken off the
    /// queue: a process killed inside `get` leaves it to another consumer,
    /// unless the kill comes in the return itself (or, for a message larger
    /// than half the ring, while its parts are read).
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and drained,
    /// [`QueueError::Disconnected`] when it is empty and every other
    /// process using it died, [`QueueError::Deserialize`] (that message is
    /// gone), [`QueueError::Corrupted`].
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_until(None)
    }

    /// Gets an item, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`] on timeout, as for [`Queue::get`] otherwise.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_until(Some(Deadline::after(timeout)))
    }

    /// Gets an item if one is there now.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`], as for [`Queue::get`] otherwise.
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.get_until(Some(Deadline::after(NOWAIT_LOCK)))
    }

    /// Items in the queue (a snapshot: others may be putting and getting).
    pub fn qsize(&self) -> usize {
        self.shared.qsize() as usize
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn empty(&self) -> bool {
        self.shared.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot; never for an
    /// unbounded queue).
    pub fn full(&self) -> bool {
        let max = self.shared.maxsize();
        max != 0 && self.shared.qsize() >= max
    }

    /// The item limit (0: none).
    pub fn maxsize(&self) -> usize {
        self.shared.maxsize() as usize
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.raw.capacity() as usize
    }

    /// Closes the queue for every process: later puts fail with
    /// [`QueueError::Closed`]; gets drain what is left, then fail with it.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed()
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = QueueShared::deserialize(deserializer, &Self::identity())?;
        Ok(Self {
            shared: Arc::new(shared),
            _t: PhantomData,
        })
    }
}

/// A [`Queue`] that counts unfinished tasks (Python's
/// `multiprocessing.JoinableQueue`): every put adds one, every
/// [`task_done`](Self::task_done) takes one, and [`join`](Self::join) waits
/// for none. Derefs to the [`Queue`] for put and get.
///
/// # Examples
///
/// ```
/// let q = shm_collections::queue::JoinableQueue::<u32>::new(0)?;
/// q.put(1).expect("room");
/// assert!(!q.join_timeout(std::time::Duration::from_millis(1)));
/// assert_eq!(q.get()?, 1);
/// q.task_done()?;
/// q.join();
/// assert!(q.task_done().is_err(), "one put, one task_done");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a snapshot for display.
        let unfinished = self.queue.shared.header().unfinished.load(Relaxed);
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &unfinished)
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A new joinable queue (see [`Queue::new`]).
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`].
    pub fn new(maxsize: usize) -> Result<Self, SegmentError> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new joinable queue whose ring holds `bytes` bytes.
    ///
    /// # Errors
    ///
    /// As for [`Queue::with_capacity`].
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            queue: Queue::make(maxsize, bytes, true)?,
        })
    }

    /// Says that a task taken from the queue is finished.
    ///
    /// # Errors
    ///
    /// [`QueueError::TooManyTaskDone`] when called more times than items
    /// were put.
    pub fn task_done(&self) -> Result<(), QueueError> {
        let h = self.queue.shared.header();
        // SeqCst: a Dekker pair with `join` (it raises `join_waiters`, then
        // reads `unfinished`; we lower `unfinished`, then read
        // `join_waiters`): one of the two sees the other.
        let before = h
            .unfinished
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .map_err(|_| QueueError::TooManyTaskDone)?;
        if before == 1 && h.join_waiters.load(SeqCst) != 0 {
            sys::futex_wake(&h.unfinished, u32::MAX);
        }
        Ok(())
    }

    fn join_until(&self, deadline: Option<Deadline>) -> bool {
        let h = self.queue.shared.header();
        // SeqCst: see `task_done`.
        h.join_waiters.fetch_add(1, SeqCst);
        let done = loop {
            // SeqCst: see `task_done`.
            let n = h.unfinished.load(SeqCst);
            if n == 0 {
                break true;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                break false;
            }
            let slice = Deadline::after(shm_sync::park::LIVENESS_SLICE);
            sys::futex_wait(&h.unfinished, n, Some(deadline.map_or(slice, |d| d.min(slice))));
        };
        // SeqCst: see `task_done`.
        h.join_waiters.fetch_sub(1, SeqCst);
        done
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) {
        self.join_until(None);
    }

    /// Waits up to `timeout`; true when every item was marked done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Some(Deadline::after(timeout)))
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        // Relaxed: a snapshot.
        self.queue.shared.header().unfinished.load(Relaxed) as usize
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let queue = Queue::deserialize(deserializer)?;
        if !queue.shared.joinable() {
            return Err(serde::de::Error::custom("the queue received is not joinable"));
        }
        Ok(Self { queue })
    }
}

/// An unbounded queue with only `put`, `get`, `empty` and `close` (Python's
/// `multiprocessing.SimpleQueue`).
///
/// # Examples
///
/// ```
/// let q = shm_collections::queue::SimpleQueue::<(u8, String)>::new()?;
/// q.put((1, "one".into())).expect("room");
/// assert!(!q.empty());
/// assert_eq!(q.get()?, (1, "one".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.queue).finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new empty queue.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made.
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self { queue: Queue::new(0)? })
    }

    /// Puts an item, waiting for room in the ring if needed.
    ///
    /// # Errors
    ///
    /// As for [`Queue::put`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// Gets the oldest item, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// As for [`Queue::get`].
    pub fn get(&self) -> Result<T, QueueError> {
        self.queue.get()
    }

    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes the queue (see [`Queue::close`]).
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            queue: Queue::deserialize(deserializer)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "test byte patterns")]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Job {
        id: u64,
        name: String,
    }

    #[test]
    fn fifo_maxsize_and_counts() {
        let q = Queue::<Job>::new(3).expect("queue");
        assert!(q.empty() && !q.full());
        for id in 0..3 {
            q.put(Job {
                id,
                name: format!("job {id}"),
            })
            .expect("room");
        }
        assert!(q.full());
        assert_eq!(q.qsize(), 3);
        let e = q
            .put_timeout(
                Job {
                    id: 9,
                    name: String::new(),
                },
                Duration::from_millis(20),
            )
            .unwrap_err();
        assert_eq!(e.kind, QueueError::Full);
        assert_eq!(e.item.id, 9, "the item comes back");
        for id in 0..3 {
            assert_eq!(q.get().expect("item").id, id);
        }
        assert_eq!(q.get_timeout(Duration::from_millis(20)), Err(QueueError::Empty));
    }

    #[test]
    fn items_that_cannot_be_serialised_fail_at_put() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        impl<'de> Deserialize<'de> for Bad {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Ok(Bad)
            }
        }
        let q = Queue::<Bad>::new(0).expect("queue");
        assert!(matches!(q.put(Bad).unwrap_err().kind, QueueError::Serialize(_)));
        assert_eq!(q.qsize(), 0, "nothing was sent");
    }

    #[test]
    fn a_message_that_does_not_deserialise_is_an_error_for_it_alone() {
        let q = Queue::<u8>::new(0).expect("queue");
        q.shared.put_bytes(Payload::Bytes(&[]), None).expect("raw");
        q.shared.put_bytes(Payload::Bytes(&[1, 2]), None).expect("raw");
        q.put(7).expect("room");
        assert!(matches!(q.get(), Err(QueueError::Deserialize(_))), "too short");
        assert!(matches!(q.get(), Err(QueueError::Deserialize(_))), "too long");
        assert_eq!(q.get(), Ok(7));
    }

    #[test]
    fn large_items_stream_through_a_small_ring() {
        let q = Queue::<Vec<u8>>::with_capacity(0, 4096).expect("queue");
        let big: Vec<u8> = (0..if cfg!(miri) { 20_000 } else { 16usize << 20 })
            .map(|i| (i % 251) as u8)
            .collect();
        std::thread::scope(|s| {
            let q2 = q.clone();
            let big2 = big.clone();
            s.spawn(move || {
                q2.put(vec![1, 2, 3]).expect("small");
                q2.put(big2).expect("big");
                q2.put(vec![4]).expect("small");
            });
            assert_eq!(q.get().expect("small"), [1, 2, 3]);
            assert!(q.get().expect("big") == big, "16 MiB intact");
            assert_eq!(q.get().expect("small"), [4]);
        });
    }

    #[test]
    fn many_threads_put_and_get_everything_once() {
        let q = Queue::<(u32, u32)>::with_capacity(16, 256).expect("queue");
        let per = if cfg!(miri) { 200 } else { 5000u32 };
        let got = std::thread::scope(|s| {
            for p in 0..3 {
                let q = q.clone();
                s.spawn(move || (0..per).for_each(|i| q.put((p, i)).expect("put")));
            }
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut seen = Vec::new();
                        while let Ok(x) = q.get_timeout(Duration::from_secs(2)) {
                            seen.push(x);
                        }
                        seen
                    })
                })
                .collect();
            consumers
                .into_iter()
                .map(|c| c.join().expect("consumer"))
                .collect::<Vec<_>>()
        });
        for seen in &got {
            for p in 0..3 {
                let mine: Vec<u32> = seen.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "FIFO per producer");
            }
        }
        let mut all: Vec<_> = got.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all.len(), 3 * per as usize);
        all.dedup();
        assert_eq!(all.len(), 3 * per as usize, "no duplicates");
    }

    #[test]
    fn joinable_counts_tasks() {
        let q = JoinableQueue::<u32>::new(0).expect("queue");
        for i in 0..4 {
            q.put(i).expect("room");
        }
        assert_eq!(q.unfinished(), 4);
        std::thread::scope(|s| {
            s.spawn(|| {
                while let Ok(_item) = q.get_timeout(Duration::from_millis(200)) {
                    q.task_done().expect("one per item");
                }
            });
            q.join();
        });
        assert_eq!(q.unfinished(), 0);
        assert_eq!(q.task_done(), Err(QueueError::TooManyTaskDone));
    }

    #[test]
    fn a_scribbled_ring_is_an_error_not_a_crash() {
        let q = Queue::<u64>::with_capacity(0, 256).expect("queue");
        // Scribbled caches are not trusted: nothing is lost.
        q.shared.header().put_head.store(0xdead_beef, Relaxed);
        q.shared.header().get_tail.store(0xdead_beef, Relaxed);
        q.put(4).expect("room");
        assert_eq!(q.get(), Ok(4));
        // Scribbled counts are clamped.
        q.shared.header().gets.store(77, Relaxed);
        assert_eq!(q.qsize(), 0);
        q.shared
            .header()
            .gets
            .store(q.shared.header().puts.load(Relaxed), Relaxed);
        q.put(5).expect("room");
        q.shared.raw.header().tail.store(1 << 20, Relaxed);
        assert!(matches!(q.get(), Err(QueueError::Corrupted(_))));
    }

    #[test]
    fn a_received_queue_of_another_type_or_size_is_refused() {
        let q = Queue::<u64>::new(0).expect("queue");
        let seg = q.shared.seg.try_clone().expect("clone");
        assert!(QueueShared::attach(seg, &Queue::<String>::identity()).is_err());
        let seg = q.shared.seg.try_clone().expect("clone");
        q.shared.raw.header().capacity.store(12345, Relaxed);
        assert!(QueueShared::attach(seg, &Queue::<u64>::identity()).is_err());
    }
}
