//! A bounded single-producer single-consumer ring of plain data in shared
//! memory: wait-free `try_send`/`try_recv`, batches (`try_send_slice`,
//! `try_recv_slice`), loans (`reserve`: write a slot in place, then commit;
//! `peek`: read a slot in place, then release), and blocking `send`/`recv`
//! and timed `send_timeout`/`recv_timeout`, with `shmproc_core`'s error family.
//!
//! # Algorithm
//!
//! Lamport's ring with cached indices (rtrb, and Rigtorp's `SPSCQueue`).
//! `tail` (written only by the producer) and `head` (only by the consumer)
//! are free-running `u32` positions on cache lines of their own; a slot is
//! `position & (capacity - 1)`. Each side keeps a private copy of the other
//! side's index and re-reads the shared one only when the copy says full
//! (producer) or empty (consumer), so in steady state each message costs one
//! store and no cross-core read.
//!
//! Indices are `u32` so that a sleeper can wait on them with a futex.
//!
//! # Sleeping without costing the fast path
//!
//! A side that finds the ring full (or empty) spins briefly, then raises
//! its `sleeping` flag (to a value naming the index it saw), issues
//! `membarrier(GLOBAL_EXPEDITED)`, re-checks, and sleeps on the other
//! side's index. The other side, after publishing its index, reads the flag
//! after only a compiler barrier and makes a wake call only when the flag
//! is up; it takes the flag down unless the sleeper already saw what it
//! published (see `wake_sleeper`). The membarrier makes this Dekker handshake
//! sound: it forces a full barrier on every running thread of every
//! registered process, which is what the fast side omits (liburcu's
//! `sys_membarrier` scheme). The fast path thus pays no fence and no
//! system call; only the side that goes to sleep pays, and it is about to
//! pay a futex sleep anyway.
//!
//! Where `membarrier` is refused (seccomp, gVisor, an old kernel), or
//! switched off with `SHM_MEMBARRIER=off`, both sides issue a
//! `fence(SeqCst)` instead: the fast side then pays one fence per message
//! (see [`shmproc_core::sys::membarrier_active`]). A wake is never left to the
//! liveness slice either way.
//!
//! # Dead peers and bad input
//!
//! Each side records its process when it first acts in a process. A
//! sleeper checks every [`LIVENESS_SLICE`](shmproc_core::LIVENESS_SLICE)
//! (100 ms) that its peer still runs; if the peer closed
//! its end or died, a blocked `send` hands the value back and a blocked
//! `recv` drains what is left and then reports the disconnection. A message
//! is published only after it is completely written, so a producer killed
//! mid-write never publishes half a message. Indices read from shared memory
//! are checked: a distance larger than the capacity means a peer scribbled
//! on the header, and is reported as [`Fault::Corrupted`], never used.
//!
//! The copying paths (`try_send`, `try_send_slice`, `try_recv`, `try_recv_slice` and
//! the blocking calls built on them) move a slot through relaxed atomic
//! words ([`shmproc_core::atomic::copy`]): the index stores and loads order
//! them, and a peer that writes a slot it does not own yields a torn value,
//! never a data race. Only the loans ([`Producer::reserve`],
//! [`Consumer::peek`]) form a reference into a slot; see their docs.
//!
//! # Memory ordering
//!
//! A slot's contents are published by the Release store of `tail` and
//! acquired by the consumer's Acquire load of `tail`; a slot is handed back
//! by the Release store of `head`, acquired by the producer's Acquire load.
//!
//! The loom models are in `loom_tests.rs`; `crate::sync` switches the
//! atomics, the memory and the system calls.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::sys::Deadline;
use shmproc_core::{
    Fault, RecvError, RecvTimeoutError, Segment, SegmentError, SegmentKind, SendError, SendTimeoutError, ShmSafe,
    TryRecvError, TrySendError, TypeIdentity,
};

pub use crate::ring::MAX_CAPACITY;
#[cfg(not(loom))]
use crate::ring::ring_capacity;
use crate::ring::{HEADER, Slept, Word};
use crate::ring::{Receive, Stop, full_or_stop, receive, sleep_on, wake_for_close, wake_if_sleeping};
use crate::ring::{claim, load_slot, peer_gone, store_slot};
use crate::sync;

pub use loan::{RecvLoan, SendLoan};

const PRODUCER_CLOSED: u32 = 1;
const CONSUMER_CLOSED: u32 = 2;

/// Line 0: set up once, then read by both sides; written only on close and
/// on the rare way to sleep. Lines 1 and 2: one index each.
///
/// Every field is an atomic, the padding too: a `&Header` then covers only
/// interior-mutable bytes, which is what a reference over memory that other
/// processes write (legally or as a scribble) must cover. The same holds
/// for the headers of `mpmc`, `bytes`, `duplex` and `queue`.
#[repr(C)]
#[cfg_attr(loom, derive(Default))]
struct Header {
    capacity: Word,
    producer: Word,
    consumer: Word,
    closed: Word,
    producer_sleeping: Word,
    consumer_sleeping: Word,
    _pad0: [Word; 26],
    tail: Word,
    _pad1: [Word; 31],
    head: Word,
    _pad2: [Word; 31],
}

// Loom's atomics are larger: under loom the header is a heap value.
#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Header>() == HEADER);
    // `ring_capacity` reads the capacity as the header's first word.
    assert!(std::mem::offset_of!(Header, capacity) == 0);
    assert!(std::mem::offset_of!(Header, tail) == 128);
    assert!(std::mem::offset_of!(Header, head) == 256);
};

/// The mapped ring, shared by both ends in one process.
struct Ring<T> {
    #[cfg(not(loom))]
    seg: Segment,
    #[cfg(loom)]
    seg: sync::Heap<Header, T>,
    capacity: u32,
    _t: PhantomData<T>,
}

// SAFETY: the ring is shared memory reached through atomics and through
// slots that the protocol gives to one side at a time; T is plain data.
unsafe impl<T: ShmSafe> Send for Ring<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe> Sync for Ring<T> {}

impl<T: ShmSafe> Ring<T> {
    #[cfg(not(loom))]
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<T>(SegmentKind::RING_SPSC)
    }

    #[cfg_attr(
        loom,
        allow(unused_variables, reason = "no segment: `bytes` and `name` are not needed")
    )]
    fn create(capacity: usize, name: Option<&str>) -> Result<Self, SegmentError> {
        if capacity == 0 || capacity > MAX_CAPACITY || size_of::<T>() == 0 {
            return Err(SegmentError::InvalidSize {
                requested: capacity as u64,
                reason: "a ring holds 1 to 2^30 non-zero-sized elements",
            });
        }
        let capacity = capacity.next_power_of_two();
        let bytes = capacity
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(HEADER))
            .ok_or(SegmentError::InvalidSize {
                requested: capacity as u64,
                reason: "ring size overflows",
            })?;
        #[cfg(not(loom))]
        let seg = match name {
            Some(name) => Segment::create_named(name, &Self::identity(), bytes)?,
            None => Segment::create(&Self::identity(), bytes)?,
        };
        #[cfg(loom)]
        let seg = sync::Heap::new(Header::default(), capacity);
        let ring = Self {
            capacity: u32::try_from(capacity).expect("at most 2^30"),
            seg,
            _t: PhantomData,
        };
        // Relaxed: the segment is not shared with anyone yet.
        ring.header().capacity.store(ring.capacity, Relaxed);
        Ok(ring)
    }

    #[cfg(not(loom))]
    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let capacity = ring_capacity::<T>(&seg, &Self::identity(), 1, |cap| {
            cap.checked_mul(size_of::<T>()).and_then(|b| b.checked_add(HEADER))
        })?;
        Ok(Self {
            seg,
            capacity,
            _t: PhantomData,
        })
    }

    #[cfg(not(loom))]
    fn header(&self) -> &Header {
        // SAFETY: checked at create/attach: the payload starts with a Header.
        unsafe { self.seg.payload().cast::<Header>().as_ref() }
    }

    /// Pointer to the slot of position `pos`.
    #[cfg(not(loom))]
    fn slot(&self, pos: u32) -> NonNull<T> {
        let i = (pos & (self.capacity - 1)) as usize;
        debug_assert!(i < self.capacity as usize);
        // SAFETY: HEADER + i * size_of::<T>() < payload length (i < capacity,
        // checked layout); the result is aligned because HEADER is a multiple
        // of 128 and T's alignment (<= 128) divides its size.
        unsafe { self.seg.payload().add(HEADER + i * size_of::<T>()).cast::<T>() }
    }

    #[cfg(loom)]
    fn header(&self) -> &Header {
        &self.seg.header
    }

    #[cfg(loom)]
    fn slot(&self, pos: u32) -> NonNull<T> {
        self.seg.slot((pos & (self.capacity - 1)) as usize)
    }
}

/// The state of an SPSC ring for the command `shm`, from a private copy of
/// its payload (see `crate::inspect`).
#[cfg(not(loom))]
pub(crate) fn describe(payload: &[u8]) -> Option<shmproc_core::segment::State> {
    use shmproc_core::segment::{Field, word_at};
    use shmproc_sync::inspect::owner;
    use std::mem::offset_of;
    let w = |at: usize| word_at(payload, at);
    let mut s = crate::inspect::ring_words(payload, 0, "items")?;
    s.push(("producer", owner(w(offset_of!(Header, producer))?)));
    s.push(("consumer", owner(w(offset_of!(Header, consumer))?)));
    s.push(("closed", Field::Flag(w(offset_of!(Header, closed))? != 0)));
    Some(s)
}

/// Creates a ring of at least `capacity` elements (rounded up to a power of
/// two) in a new shared segment and returns its two ends.
///
/// # Errors
///
/// [`SegmentError::InvalidSize`] for a zero or too large capacity.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = shmproc_collections::spsc::channel::<u64>(4)?;
/// tx.try_send(7).expect("room");
/// assert_eq!(rx.try_recv(), Ok(7));
/// assert_eq!(rx.try_recv(), Err(shmproc_core::TryRecvError::Empty));
/// # Ok::<(), shmproc_core::SegmentError>(())
/// ```
pub fn channel<T: ShmSafe>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), SegmentError> {
    sync::membarrier_register();
    let ring = Arc::new(Ring::<T>::create(capacity, None)?);
    Ok((Producer::new(Arc::clone(&ring)), Consumer::new(ring)))
}

/// Where a ring lives, as one end caches it.
struct At<T> {
    header: NonNull<Header>,
    #[cfg(not(loom))]
    slots: NonNull<T>,
    capacity: u32,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> At<T> {
    fn of(ring: &Ring<T>) -> Self {
        Self {
            header: NonNull::from(ring.header()),
            #[cfg(not(loom))]
            slots: ring.slot(0),
            capacity: ring.capacity,
            _t: PhantomData,
        }
    }
}

/// The writing end. `Send`, not `Sync`: one owner at a time; pass it to a
/// child process as an argument.
pub struct Producer<T: ShmSafe> {
    ring: Arc<Ring<T>>,
    /// `ring`'s header, slots and capacity, cached: no pointer chase on
    /// the fast path.
    at: At<T>,
    tail: u32,
    cached_head: u32,
    claimed: u32,
}

/// The reading end. `Send`, not `Sync`.
pub struct Consumer<T: ShmSafe> {
    ring: Arc<Ring<T>>,
    /// As in [`Producer`].
    at: At<T>,
    head: u32,
    cached_tail: u32,
    claimed: u32,
}

// SAFETY: `at` points into the ring that the `ring` field keeps alive
// (Send and Sync for ShmSafe T); the end itself has one owner at a time.
unsafe impl<T: ShmSafe> Send for Producer<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe> Send for Consumer<T> {}

/// The cached view of the ring, shared by both ends' code.
macro_rules! cached_ring {
    () => {
        /// The ring's header.
        #[inline]
        pub(super) fn h(&self) -> &Header {
            // SAFETY: `at.header` is `ring.header()`, alive while `ring` is.
            unsafe { self.at.header.as_ref() }
        }

        /// Pointer to the slot of position `pos`.
        #[inline]
        pub(super) fn slot(&self, pos: u32) -> NonNull<T> {
            #[cfg(not(loom))]
            {
                let i = (pos & (self.at.capacity - 1)) as usize;
                debug_assert!(i < self.at.capacity as usize);
                // SAFETY: i < capacity: inside the ring's slots (`Ring::slot`).
                unsafe { self.at.slots.add(i) }
            }
            #[cfg(loom)]
            {
                self.ring.slot(pos)
            }
        }

        /// The closed bits.
        #[inline]
        pub(super) fn closed_bits(&self) -> u32 {
            // Acquire: pairs with the Release in `close`, so a close is seen
            // after everything published before it.
            self.h().closed.load(Acquire)
        }
    };
}

impl<T: ShmSafe> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.at.capacity)
            .finish_non_exhaustive()
    }
}

impl<T: ShmSafe> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.at.capacity)
            .finish_non_exhaustive()
    }
}

/// An index distance past the capacity: a peer wrote over `head` or
/// `tail`. Two words, so the hot paths' `Result` stays small; it becomes a
/// [`Fault`] only on the (cold) error path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BadDistance {
    pub(crate) capacity: u32,
    pub(crate) found: u32,
}

impl From<BadDistance> for Fault {
    #[cold]
    #[inline(never)]
    fn from(d: BadDistance) -> Self {
        Fault::corrupted(
            "spsc ring",
            "tail - head",
            format_args!("at most the capacity, {}", d.capacity),
            d.found,
        )
    }
}

/// A send error without a value, with `value` put in.
fn with_value<T>(e: TrySendError<()>, value: T) -> TrySendError<T> {
    match e {
        TrySendError::Full(()) => TrySendError::Full(value),
        TrySendError::Fault((), f) => TrySendError::Fault(value, f),
        _ => TrySendError::Disconnected(value),
    }
}

#[cfg(not(loom))]
impl<T: ShmSafe> Serialize for Producer<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.seg.serialize(serializer)
    }
}

#[cfg(not(loom))]
impl<'de, T: ShmSafe> Deserialize<'de> for Producer<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ring = Ring::attach(Segment::deserialize(deserializer)?).map_err(shmproc_core::handle::decode_error)?;
        sync::membarrier_register();
        Ok(Self::new(Arc::new(ring)))
    }
}

#[cfg(not(loom))]
impl<T: ShmSafe> Serialize for Consumer<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.seg.serialize(serializer)
    }
}

#[cfg(not(loom))]
impl<'de, T: ShmSafe> Deserialize<'de> for Consumer<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ring = Ring::attach(Segment::deserialize(deserializer)?).map_err(shmproc_core::handle::decode_error)?;
        sync::membarrier_register();
        Ok(Self::new(Arc::new(ring)))
    }
}

// After `cached_ring!`, which they use.
mod ends;
mod loan;
#[cfg(not(loom))]
mod named;

#[cfg(not(loom))]
pub use named::{OpenError, create_named};

// Segments and real threads: not under loom (see `loom_tests.rs`).
#[cfg(all(test, not(loom)))]
mod tests;
