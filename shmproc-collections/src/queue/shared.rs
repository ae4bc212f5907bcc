//! The mapped queue: its header (the two locks, the counts, the users), how
//! it is created, attached, opened and handed to another process, and what
//! the command `shm` shows of it. Its operations are in `ops`.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

#[cfg(not(loom))]
use serde::{Deserialize, Deserializer, Serialize, Serializer};
#[cfg(not(loom))]
use shmproc_core::{Segment, SegmentError, TypeIdentity};
use shmproc_sync::ProcessLock;

use crate::bytes::RawRing;
#[cfg(not(loom))]
use crate::bytes::{round_capacity, valid_capacity};
#[cfg(not(loom))]
use crate::ring::HEADER;
use crate::ring::Word;

use super::MAX_PEERS;
use crate::sync;

/// Words of one process-local flag (not shared memory).
#[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
pub(super) type LocalWord = std::sync::atomic::AtomicU32;

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
    pub(super) _heap: Box<super::heap::model::HeapQueue>,
    pub(super) hdr: NonNull<QueueHeader>,
    pub(super) raw: RawRing,
    /// The process that last registered through this mapping.
    pub(super) registered: LocalWord,
}

// SAFETY: shared memory reached through atomics, and frames the ring
// protocol gives to one lock holder at a time.
unsafe impl Send for QueueShared {}
// SAFETY: as above.
unsafe impl Sync for QueueShared {}

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
