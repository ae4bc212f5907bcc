//! Loom's stand-in for a queue's segment: the mapped queue on heap memory,
//! for the models of `loom_tests`.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;

use shmproc_sync::ProcessLock;

use super::shared::{LocalWord, QueueHeader, QueueShared};
use crate::bytes::RawRing;
use crate::ring::Word;

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
pub(super) mod model {
    pub(crate) struct HeapQueue {
        pub(super) queue: super::QueueHeader,
        pub(super) ring: crate::bytes::RingHeader,
        pub(super) data: Box<[u64]>,
    }
}

impl QueueShared {
    /// A queue on heap memory for loom's models: a ring of `cap` bytes (a
    /// valid capacity), at most `maxsize` items (0: unbounded).
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
}
