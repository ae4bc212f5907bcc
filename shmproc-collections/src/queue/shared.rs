//! The mapped queue: its header, the two locks, the counts and their
//! recovery after a dead holder, and the waits for room or messages.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

#[cfg(not(loom))]
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::sys::Deadline;
#[cfg(not(loom))]
use shmproc_core::{Segment, SegmentError, TypeIdentity};
use shmproc_sync::ProcessLock;

use crate::bytes::{Kind, RawRing, ReadCursor, Stop, WriteCursor, wait_until};
#[cfg(not(loom))]
use crate::bytes::{round_capacity, valid_capacity};
#[cfg(not(loom))]
use crate::ring::HEADER;
use crate::ring::{Word, wake_for_close};

use super::{MAX_PEERS, TaskDoneError};
use crate::bytes::Fail;
use crate::sync::{self, fence};

/// Words of one process-local flag (not shared memory).
#[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
type LocalWord = std::sync::atomic::AtomicU32;

#[repr(C)]
pub(super) struct QueueHeader {
    // Line 0: written once or rarely.
    pub(super) maxsize: Word,
    pub(super) closed: Word,
    pub(super) joinable: Word,
    pub(super) overflow: Word,
    /// Handles serialised for another process and not yet received.
    pub(super) in_flight: Word,
    pub(super) _pad0: [Word; 27],
    // Line 1: producers, under the put lock.
    pub(super) put_lock: ProcessLock,
    pub(super) puts: Word,
    pub(super) put_head: Word,
    pub(super) stream_open: Word,
    pub(super) put_pending: Word,
    pub(super) put_pending_tail: Word,
    /// `puts` before the pending put counted itself: what recovery puts
    /// back (a holder killed between setting `put_pending` and counting
    /// must not be taken back twice).
    pub(super) put_pending_puts: Word,
    pub(super) _pad1: [Word; 24],
    // Line 2: consumers, under the get lock.
    pub(super) get_lock: ProcessLock,
    pub(super) gets: Word,
    pub(super) get_tail: Word,
    pub(super) get_pending: Word,
    pub(super) get_pending_head: Word,
    /// `gets` before the pending get counted itself (as `put_pending_puts`).
    pub(super) get_pending_gets: Word,
    pub(super) _pad2: [Word; 25],
    // Line 3: JoinableQueue.
    pub(super) unfinished: Word,
    pub(super) join_waiters: Word,
    pub(super) _pad3: [Word; 30],
    // Lines 4-5.
    pub(super) peers: [Word; MAX_PEERS],
}

/// Bytes before the ring header.
#[cfg(not(loom))]
const QUEUE_HEADER: usize = 768;
// Loom's atomics are larger: under loom the headers are heap values.
#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<QueueHeader>() == QUEUE_HEADER);
    assert!(std::mem::offset_of!(QueueHeader, put_lock) == 128);
    assert!(std::mem::offset_of!(QueueHeader, get_lock) == 256);
    assert!(std::mem::offset_of!(QueueHeader, unfinished) == 384);
};

#[cfg(loom)]
impl QueueHeader {
    /// All words zero, as in a new segment.
    fn zeroed() -> Self {
        let w = || Word::new(0);
        Self {
            maxsize: w(),
            closed: w(),
            joinable: w(),
            overflow: w(),
            in_flight: w(),
            _pad0: std::array::from_fn(|_| w()),
            put_lock: ProcessLock::default(),
            puts: w(),
            put_head: w(),
            stream_open: w(),
            put_pending: w(),
            put_pending_tail: w(),
            put_pending_puts: w(),
            _pad1: std::array::from_fn(|_| w()),
            get_lock: ProcessLock::default(),
            gets: w(),
            get_tail: w(),
            get_pending: w(),
            get_pending_head: w(),
            get_pending_gets: w(),
            _pad2: std::array::from_fn(|_| w()),
            unfinished: w(),
            join_waiters: w(),
            _pad3: std::array::from_fn(|_| w()),
            peers: std::array::from_fn(|_| w()),
        }
    }
}

/// Loom's stand-in for a queue's segment: both headers as heap values and
/// the ring's bytes in a heap buffer (8-aligned, as frames need). The
/// payload bytes are plain memory that loom does not track: a frame read
/// before its publication shows up as a wrong or corrupted message, which
/// the models check, not as a reported race.
#[cfg(loom)]
mod model {
    pub(crate) struct HeapQueue {
        pub(super) queue: super::QueueHeader,
        pub(super) ring: crate::bytes::RingHeader,
        pub(super) data: Box<[u64]>,
    }
}

/// Most bytes a put serialises straight into the ring; larger items go
/// through a buffer first.
pub(super) const IN_PLACE: u32 = 120;

/// What a put writes.
pub(super) enum Payload<'a> {
    /// Serialised bytes.
    Bytes(&'a [u8]),
    /// Serialises into the ring in place (at most [`IN_PLACE`] bytes);
    /// returns the length, or `None` when the item does not fit.
    InPlace(&'a mut dyn FnMut(&mut [u8]) -> Option<usize>),
}

/// The mapped queue, shared by the handles of one process.
pub(crate) struct QueueShared {
    #[cfg(not(loom))]
    pub(super) seg: Segment,
    /// Loom's stand-in for the segment (`hdr` and `raw` point into it).
    #[cfg(loom)]
    _heap: Box<model::HeapQueue>,
    hdr: NonNull<QueueHeader>,
    pub(super) raw: RawRing,
    /// The process that last registered through this mapping.
    registered: LocalWord,
}

// SAFETY: shared memory reached through atomics, and frames the ring
// protocol gives to one lock holder at a time.
unsafe impl Send for QueueShared {}
// SAFETY: as above.
unsafe impl Sync for QueueShared {}

/// Takes `lock` for this process, waiting until `deadline` (forever with
/// `None`; a passed one, as for `try_*`: not at all, so a lock another
/// process holds at this instant reads as no room or no item). `None` when
/// not taken; `Some(true)` when taken from a holder that died holding it.
#[inline]
fn take(lock: &ProcessLock, deadline: Option<Deadline>) -> Option<bool> {
    if deadline.is_some_and(|d| d.has_passed()) {
        if lock.try_lock() {
            return Some(false);
        }
        return lock.take_if_holder_dead().then_some(true);
    }
    lock.lock_until(deadline)
}

/// Unlocks a [`ProcessLock`] when dropped.
struct Unlock<'a>(&'a ProcessLock);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

impl QueueShared {
    /// A new queue, in a named segment when `name` is given.
    #[cfg(not(loom))]
    pub(super) fn create(
        name: Option<&str>,
        id: &TypeIdentity,
        maxsize: usize,
        capacity: usize,
        joinable: bool,
    ) -> Result<Self, SegmentError> {
        let cap = round_capacity(capacity)?;
        let maxsize =
            u32::try_from(maxsize)
                .ok()
                .filter(|&m| m < i32::MAX as u32)
                .ok_or(SegmentError::InvalidSize {
                    requested: maxsize as u64,
                    reason: "maxsize is below 2^31 (0: unbounded)",
                })?;
        let len = QUEUE_HEADER + HEADER + cap as usize;
        let seg = match name {
            Some(name) => Segment::create_named(name, id, len)?,
            None => Segment::create(id, len)?,
        };
        let q = Self::map(seg, cap);
        let h = q.header();
        // Relaxed: the segment is not shared with anyone yet.
        h.maxsize.store(maxsize, Relaxed);
        h.joinable.store(u32::from(joinable), Relaxed);
        q.raw.header().capacity.store(cap, Relaxed);
        sync::membarrier_register();
        Ok(q)
    }

    #[cfg(not(loom))]
    pub(super) fn attach(seg: Segment, id: &TypeIdentity) -> Result<Self, SegmentError> {
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

    #[cfg(not(loom))]
    pub(super) fn map(seg: Segment, cap: u32) -> Self {
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

    /// A queue on heap memory for loom's models: a ring of `cap` bytes (a
    /// valid capacity), at most `maxsize` items (0: unbounded).
    #[cfg(loom)]
    pub(crate) fn heap(cap: u32, maxsize: u32, joinable: bool) -> Self {
        assert!(crate::bytes::valid_capacity(cap));
        let mut heap = Box::new(model::HeapQueue {
            queue: QueueHeader::zeroed(),
            ring: crate::bytes::RingHeader::default(),
            data: vec![0u64; cap as usize / 8].into_boxed_slice(),
        });
        let data = NonNull::new(heap.data.as_mut_ptr())
            .expect("a box is never null")
            .cast::<u8>();
        let hdr = NonNull::from(&heap.queue);
        let ring = NonNull::from(&heap.ring).cast::<u8>();
        // SAFETY: a RingHeader and `cap` 8-aligned bytes, in a box that the
        // result owns (boxed contents do not move when the box does).
        let raw = unsafe { RawRing::new(ring, data, cap) };
        let q = Self {
            _heap: heap,
            hdr,
            raw,
            registered: LocalWord::new(0),
        };
        let h = q.header();
        // Relaxed: not shared with any thread yet.
        h.maxsize.store(maxsize, Relaxed);
        h.joinable.store(u32::from(joinable), Relaxed);
        q.raw.header().capacity.store(cap, Relaxed);
        q
    }

    pub(super) fn header(&self) -> &QueueHeader {
        // SAFETY: the payload starts with a QueueHeader (see `map`); all of
        // its fields are atomics or padding, valid for any bits.
        unsafe { self.hdr.as_ref() }
    }

    pub(super) fn maxsize(&self) -> u32 {
        // Relaxed: written once at creation.
        self.header().maxsize.load(Relaxed)
    }

    pub(super) fn joinable(&self) -> bool {
        // Relaxed: written once at creation.
        self.header().joinable.load(Relaxed) != 0
    }

    pub(super) fn closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.header().closed.load(Acquire) != 0
    }

    /// Names this process in the peer table (once per process).
    #[inline]
    pub(super) fn register(&self) {
        // Relaxed: a process-local cache (of the owner id below).
        let me = crate::sync::owner_id();
        if self.registered.load(Relaxed) != me {
            self.register_slow(me);
        }
    }

    #[cold]
    pub(super) fn register_slow(&self, me: u32) {
        sync::membarrier_register();
        let h = self.header();
        // Relaxed throughout: owner ids for liveness checks only.
        let known = h.peers.iter().any(|p| p.load(Relaxed) == me);
        let placed = known
            || h.peers
                .iter()
                .any(|p| p.compare_exchange(0, me, Relaxed, Relaxed).is_ok())
            || h.peers.iter().any(|p| {
                let pid = p.load(Relaxed);
                pid != 0 && !crate::sync::owner_alive(pid) && p.compare_exchange(pid, me, Relaxed, Relaxed).is_ok()
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
    pub(super) fn others_alive(&self) -> bool {
        let me = crate::sync::owner_id();
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
                if crate::sync::owner_alive(pid) {
                    return true;
                }
            }
        }
        if !others {
            return true;
        }
        sync::children_running()
    }

    /// Opens the named queue `name`, its type and headers checked, and
    /// registers this process in it.
    #[cfg(not(loom))]
    pub(super) fn open(name: &str, id: &TypeIdentity) -> Result<Self, SegmentError> {
        let shared = Self::attach(Segment::open_named(name, Some(id))?, id)?;
        shared.register();
        Ok(shared)
    }

    #[cfg(not(loom))]
    pub(super) fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Relaxed: a count for liveness checks; the receiver takes it back
        // once registered.
        self.header().in_flight.fetch_add(1, Relaxed);
        self.seg.serialize(serializer)
    }

    #[cfg(not(loom))]
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D, id: &TypeIdentity) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(deserializer)?;
        let shared = Self::attach(seg, id).map_err(shmproc_core::handle::decode_error)?;
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
    pub(super) fn streamer_gone(&self) -> bool {
        let holder = self.header().put_lock.holder();
        // Acquire: with the Relaxed read of the lock word above, pairs with
        // the Release of its unlock, so the frames it published before
        // unlocking are seen by the caller's next look.
        fence(Acquire);
        holder.is_none_or(|pid| pid != sync::cached_pid() && !sync::task_alive(pid))
    }

    /// Repairs what a producer killed under the put lock left.
    pub(super) fn recover_put(&self) {
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
                    // As a `task_done` of the item never put (a joiner
                    // waiting for it is woken), though never below zero.
                    let _ = self.task_done();
                }
            }
            h.put_pending.store(0, Relaxed);
        }
        // Acquire: as in `RawRing::spot`; the dead holder's cached copy of
        // `head` may be older than the `tail` it published.
        h.put_head.store(rh.head.load(Acquire), Relaxed);
    }

    /// Repairs what a consumer killed under the get lock left.
    pub(super) fn recover_get(&self) {
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

    pub(super) fn qsize(&self) -> u32 {
        let h = self.header();
        // Acquire: pairs with the holders' unlocks; a snapshot.
        let n = h.puts.load(Acquire).wrapping_sub(h.gets.load(Acquire));
        // A get counts its message as the put's count is being taken back
        // (recovery), so a moment's -1 reads as 0.
        if n > i32::MAX as u32 { 0 } else { n }
    }

    /// Puts a message; false when a [`Payload::InPlace`] did not fit (or
    /// found no room at once) and nothing was sent.
    pub(super) fn put_bytes(&self, msg: Payload<'_>, deadline: Option<Deadline>) -> Result<bool, Fail> {
        self.register();
        if self.closed() {
            return Err(Fail::Disconnected);
        }
        let h = self.header();
        let died = take(&h.put_lock, deadline).ok_or(Fail::Full)?;
        let _unlock = Unlock(&h.put_lock);
        if died {
            self.recover_put();
        }
        let rh = self.raw.header();
        let gone = |slice_over: bool| self.closed() || (slice_over && !self.others_alive());
        let stop = |stop: Stop| match stop {
            Stop::Timeout => Fail::Full,
            Stop::Gone => Fail::Disconnected,
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
                // Relaxed: under the put lock; the publishing Release store
                // of `tail` carries it to the consumer whose `task_done`
                // takes it back (`join`'s pair is in `task_done`).
                h.unfinished.fetch_add(1, Relaxed);
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
                self.raw.spot(&mut c, most).map(|spot| {
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
    pub(super) fn get_with<R>(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Deadline>,
        decode: impl FnOnce(&[u8]) -> Result<R, Fail>,
    ) -> Result<R, Fail> {
        self.register();
        let h = self.header();
        let Some(died) = take(&h.get_lock, deadline) else {
            return Err(if self.closed() && self.qsize() == 0 {
                Fail::Disconnected
            } else {
                Fail::Empty
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
                Err(Stop::Timeout) => Err(Fail::Empty),
                Err(Stop::Gone) => Err(Fail::Disconnected),
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
                Err(e) => break Err(e),
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

    /// `JoinableQueue::task_done`: one unfinished task fewer.
    pub(super) fn task_done(&self) -> Result<(), TaskDoneError> {
        let h = self.header();
        // A Dekker pair with `join_until` (it raises `join_waiters`, then
        // reads `unfinished`; we lower `unfinished`, then read
        // `join_waiters`), made of SeqCst fences between each side's store
        // and load: one of the two sees the other. (SeqCst on the accesses
        // alone would do in C++ too, but loom models SeqCst accesses as
        // AcqRel and reported a lost wake-up; fences it models in full.)
        // AcqRel: the count's read-modify-write; the fence orders it.
        let before = h
            .unfinished
            .fetch_update(AcqRel, Acquire, |n| n.checked_sub(1))
            .map_err(|_| TaskDoneError)?;
        fence(SeqCst);
        // Relaxed: ordered by the fence above.
        if before == 1 && h.join_waiters.load(Relaxed) != 0 {
            sync::futex_wake(&h.unfinished, u32::MAX);
        }
        Ok(())
    }

    /// `JoinableQueue::join`: waits until no task is unfinished (not past
    /// `deadline`); false when the deadline came first.
    pub(super) fn join_until(&self, deadline: Option<Deadline>) -> bool {
        let h = self.header();
        // Relaxed + SeqCst fence: the other side of `task_done`'s pair.
        h.join_waiters.fetch_add(1, Relaxed);
        fence(SeqCst);
        let done = loop {
            // Acquire: pairs with the last `task_done`'s AcqRel, so the
            // tasks' effects are seen once `join` returns.
            let n = h.unfinished.load(Acquire);
            if n == 0 {
                break true;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                break false;
            }
            let slice = Deadline::after(shmproc_sync::park::LIVENESS_SLICE);
            sync::futex_wait(&h.unfinished, n, Some(deadline.map_or(slice, |d| d.min(slice))));
        };
        // Relaxed: a count of sleepers; a wake it causes is only spurious.
        h.join_waiters.fetch_sub(1, Relaxed);
        done
    }

    pub(super) fn close(&self) {
        // Release: pairs with the Acquire in `closed`.
        self.header().closed.store(1, Release);
        let rh = self.raw.header();
        wake_for_close(&rh.tail, &rh.reader_sleeping);
        wake_for_close(&rh.head, &rh.writer_sleeping);
    }
}

/// The state of a queue for the command `shm`, from a private copy of its
/// payload (see `crate::inspect`).
#[cfg(not(loom))]
pub(crate) fn describe(payload: &[u8]) -> Option<shmproc_core::segment::State> {
    use shmproc_core::segment::{Field, word_at};
    use std::mem::offset_of;
    let w = |at: usize| word_at(payload, at);
    let at = |field: usize| w(field);
    let items = at(offset_of!(QueueHeader, puts))?.wrapping_sub(at(offset_of!(QueueHeader, gets))?);
    let maxsize = at(offset_of!(QueueHeader, maxsize))?;
    let mut s = vec![
        // A count below zero (a get counted while a put is taken back)
        // reads as 0, as in `qsize`.
        (
            "items",
            Field::Count(if items > i32::MAX as u32 { 0 } else { items.into() }),
        ),
        (
            "maxsize",
            if maxsize == 0 {
                Field::Text("unbounded".into())
            } else {
                Field::Count(maxsize.into())
            },
        ),
    ];
    s.extend(crate::inspect::ring_words(payload, QUEUE_HEADER, "bytes used")?);
    s.push(("closed", Field::Flag(at(offset_of!(QueueHeader, closed))? != 0)));
    if at(offset_of!(QueueHeader, joinable))? != 0 {
        s.push((
            "unfinished",
            Field::Count(at(offset_of!(QueueHeader, unfinished))?.into()),
        ));
    }
    s.push((
        "put lock",
        crate::inspect::lock(payload, offset_of!(QueueHeader, put_lock))?,
    ));
    s.push((
        "get lock",
        crate::inspect::lock(payload, offset_of!(QueueHeader, get_lock))?,
    ));
    let peers = (0..MAX_PEERS)
        .filter_map(|i| w(offset_of!(QueueHeader, peers) + 4 * i))
        .filter(|&id| id != 0 && crate::sync::owner_alive(id))
        .count();
    s.push(("users alive", Field::Count(peers as u64)));
    Some(s)
}
