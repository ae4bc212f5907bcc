//! A bounded multi-producer multi-consumer ring of plain data in shared
//! memory, that a process killed at any instruction cannot wedge.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue (as in crossbeam's `ArrayQueue`): a
//! slot carries a sequence number that says whose turn it is. With free
//! running `u32` positions and `cap` slots, slot `p % cap` is free for the
//! producer of position `p` when `seq == p`, holds that producer's message
//! for the consumer of `p` when `seq == p + 1`, and is handed to the producer
//! of the next lap by `seq = p + cap`.
//!
//! To survive dead processes, a side first claims the slot by writing its
//! pid into the slot's `owner` word, and only then advances the shared
//! position with a compare-and-swap. So whoever holds a position is always
//! named in its slot:
//!
//! - a producer killed after claiming the slot but before moving `enq`:
//!   the next producer sees a dead owner and takes the claim over;
//! - a producer killed after moving `enq` but before publishing: consumers
//!   find the slot unpublished behind a live `enq`; once its owner is dead
//!   one of them takes the claim over, marks the slot a tombstone and
//!   publishes it, and the consumer that takes it skips it (a half-written
//!   message is never delivered);
//! - a consumer killed after moving `deq` but before recycling: producers
//!   find the slot still full a lap later; once its owner is dead they
//!   recycle it (the message had been taken by the dead consumer).
//!
//! Liveness is read from `/proc`, so it is checked only on the slow paths:
//! when a blocking call sleeps, or when a non-blocking call has seen the
//! same stuck slot for [`STUCK`].
//!
//! # Bad input
//!
//! A peer may scribble on any word. Every operation therefore checks what
//! it reads against what a legal history can leave there, and none spins
//! on a word that cannot move:
//!
//! - a slot sequence number behind the position must be exactly a lap
//!   behind (`p - cap`, or `p - cap + 1`: the previous lap's message, or its
//!   unfinished publication); anything else is [`Fault::Corrupted`];
//! - a sequence number ahead of the position is legal only once the shared
//!   position has moved past it (whoever took `p` moved it first); if a
//!   fresh load still reads `p`, it is [`Fault::Corrupted`];
//! - a slot claimed by a live process (a claim lasts a few instructions)
//!   that stays claimed, its position unmoved, for [`CLAIM_BOUND`] is
//!   [`Fault::Stalled`] naming the owner;
//! - blocking calls honour their deadline on every path, retries included.
//!
//! Values are copied in and out of slots through atomic words
//! ([`shmproc_core::atomic::copy`]), so a scribbled value is a wrong value,
//! never a data race.
//!
//! # Sleeping
//!
//! As in the SPSC ring: a sleeper counts itself in `push_sleepers` or
//! `pop_sleepers`, issues `membarrier(GLOBAL_EXPEDITED)`, re-checks and
//! sleeps on the sequence word of the slot it waits for; the other side
//! reads the count after a compiler barrier only, and wakes that slot's
//! sleepers only when the count is not zero.
//!
//! # Memory ordering
//!
//! A message is published by the Release store of `seq = p + 1` and taken
//! after the consumer's Acquire load of it; a slot is handed back by the
//! Release store of `seq = p + cap`, acquired by the next producer. `owner`
//! claims are Acquire on success (they order the claimant after the
//! previous holder's Release of the claim). Positions are loaded Acquire
//! and moved by Release compare-and-swaps: the sequence numbers carry the
//! data, the positions only make sure that a slot's sequence number is
//! never seen more than a lap behind the position that leads to it (which
//! would read as a corrupted ring; loom found it).
//!
//! The loom models are in `loom_tests.rs`; `crate::sync` switches the
//! atomics, the memory and the system calls.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::sys::{Deadline, FutexWait};
use shmproc_core::{
    Fault, RecvError, RecvTimeoutError, Segment, SegmentError, SegmentKind, SendError, SendTimeoutError, ShmSafe,
    TryRecvError, TrySendError, TypeIdentity,
};

use crate::ring::Stop;
#[cfg(not(loom))]
use crate::ring::ring_capacity;
use crate::ring::{HEADER, Word, load_slot, store_slot};
use crate::sync::{self, Instant};

/// Largest capacity.
pub const MAX_CAPACITY: usize = 1 << 30;
/// How long a non-blocking call watches one stuck slot before it checks
/// whether the process holding it died.
pub const STUCK: Duration = Duration::from_millis(10);
/// How long a slot may stay claimed by a live process without its position
/// moving before the claim counts as a scribbled owner word (a legal holder
/// keeps it for a few instructions, or dies and is taken over).
pub const CLAIM_BOUND: Duration = Duration::from_secs(1);
const SLOT_HEADER: usize = 16;
/// The object named in this ring's faults.
const OBJECT: &str = "mpmc ring";

#[repr(C)]
#[cfg_attr(loom, derive(Default))]
struct Header {
    capacity: Word,
    push_sleepers: Word,
    pop_sleepers: Word,
    _pad0: [Word; 29],
    enq: Word,
    _pad1: [Word; 31],
    deq: Word,
    _pad2: [Word; 31],
}

// Loom's atomics are larger: under loom header and slots are heap values.
#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Header>() == HEADER);
    // `ring_capacity` reads the capacity as the header's first word.
    assert!(std::mem::offset_of!(Header, capacity) == 0);
    assert!(std::mem::offset_of!(Header, enq) == 128);
    assert!(std::mem::offset_of!(Header, deq) == 256);
};

#[repr(C)]
#[cfg_attr(loom, derive(Default))]
struct Slot {
    seq: Word,
    owner: Word,
    tomb: Word,
    _pad: Word,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Slot>() == SLOT_HEADER);

struct Ring<T> {
    #[cfg(not(loom))]
    seg: Segment,
    #[cfg(loom)]
    seg: sync::Heap<(Header, Box<[Slot]>), T>,
    capacity: u32,
    values: usize,
    _t: PhantomData<T>,
}

// SAFETY: shared memory reached through atomics and through value slots the
// protocol gives to one process at a time; T is plain data.
unsafe impl<T: ShmSafe> Send for Ring<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe> Sync for Ring<T> {}

/// Offset of the values, after the header and the slot words, 128-aligned.
fn values_offset(capacity: usize) -> Option<usize> {
    let end = capacity.checked_mul(SLOT_HEADER)?.checked_add(HEADER)?;
    end.checked_next_multiple_of(128)
}

impl<T: ShmSafe> Ring<T> {
    #[cfg(not(loom))]
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<T>(SegmentKind::RING_MPMC)
    }

    fn layout(capacity: usize) -> Option<(usize, usize)> {
        let values = values_offset(capacity)?;
        let total = capacity.checked_mul(size_of::<T>())?.checked_add(values)?;
        Some((values, total))
    }

    #[cfg_attr(
        loom,
        allow(unused_variables, reason = "no segment: `total` and `name` are not needed")
    )]
    fn create(capacity: usize, name: Option<&str>) -> Result<Self, SegmentError> {
        if !(2..=MAX_CAPACITY).contains(&capacity) || size_of::<T>() == 0 {
            return Err(SegmentError::InvalidSize {
                requested: capacity as u64,
                reason: "an MPMC ring holds 2 to 2^30 non-zero-sized elements",
            });
        }
        let capacity = capacity.next_power_of_two();
        let (values, total) = Self::layout(capacity).ok_or(SegmentError::InvalidSize {
            requested: capacity as u64,
            reason: "ring size overflows",
        })?;
        #[cfg(not(loom))]
        let seg = match name {
            Some(name) => Segment::create_named(name, &Self::identity(), total)?,
            None => Segment::create(&Self::identity(), total)?,
        };
        #[cfg(loom)]
        let seg = sync::Heap::new(
            (Header::default(), (0..capacity).map(|_| Slot::default()).collect()),
            capacity,
        );
        let ring = Self {
            seg,
            capacity: u32::try_from(capacity).expect("at most 2^30"),
            values,
            _t: PhantomData,
        };
        // Relaxed: nobody else sees the ring yet.
        ring.header().capacity.store(ring.capacity, Relaxed);
        for i in 0..ring.capacity {
            ring.slot(i).seq.store(i, Relaxed);
        }
        Ok(ring)
    }

    #[cfg(not(loom))]
    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let capacity = ring_capacity::<T>(&seg, &Self::identity(), 2, |cap| Self::layout(cap).map(|l| l.1))?;
        let (values, _) = Self::layout(capacity as usize).expect("checked by ring_capacity");
        Ok(Self {
            seg,
            capacity,
            values,
            _t: PhantomData,
        })
    }

    #[cfg(not(loom))]
    fn header(&self) -> &Header {
        // SAFETY: the payload starts with a Header (create/attach).
        unsafe { self.seg.payload().cast::<Header>().as_ref() }
    }

    #[cfg(not(loom))]
    fn slot(&self, pos: u32) -> &Slot {
        let i = (pos & (self.capacity - 1)) as usize;
        // SAFETY: HEADER + (i + 1) * 16 <= values <= payload length: the
        // offset stays inside the mapping.
        let ptr = unsafe { self.seg.payload().add(HEADER + i * SLOT_HEADER) }.cast::<Slot>();
        // SAFETY: in bounds (above), 16-aligned (HEADER is 384, the payload
        // 128-aligned), and Slot (atomics only) accepts any bits.
        unsafe { ptr.as_ref() }
    }

    #[cfg(not(loom))]
    fn value(&self, pos: u32) -> NonNull<T> {
        let i = (pos & (self.capacity - 1)) as usize;
        // SAFETY: values + (i + 1) * size_of::<T>() <= payload length; the
        // offset is 128-aligned and T's alignment divides its size.
        unsafe { self.seg.payload().add(self.values + i * size_of::<T>()).cast::<T>() }
    }

    #[cfg(loom)]
    fn header(&self) -> &Header {
        &self.seg.header.0
    }

    #[cfg(loom)]
    fn slot(&self, pos: u32) -> &Slot {
        &self.seg.header.1[(pos & (self.capacity - 1)) as usize]
    }

    #[cfg(loom)]
    fn value(&self, pos: u32) -> NonNull<T> {
        self.seg.slot((pos & (self.capacity - 1)) as usize)
    }
}

/// Remembers a slot that looked stuck, to check its holder only after it
/// stayed stuck for [`STUCK`].
#[derive(Default)]
struct Suspect {
    pos: u32,
    since: Option<Instant>,
}

impl Suspect {
    /// Whether the slot at `pos` has looked stuck long enough (or `now` is
    /// forced by a blocking caller) to check its holder.
    fn ripe(&mut self, pos: u32, force: bool) -> bool {
        if force {
            return true;
        }
        match self.since {
            Some(t) if self.pos == pos => t.elapsed() >= STUCK,
            _ => {
                self.pos = pos;
                self.since = Some(Instant::now());
                false
            }
        }
    }
}

/// One end of an MPMC ring (both ends are the same type: clone it for more
/// producers or consumers, in this process or in children).
pub struct Mpmc<T: ShmSafe> {
    ring: Arc<Ring<T>>,
    suspect: Suspect,
}

impl<T: ShmSafe> Clone for Mpmc<T> {
    fn clone(&self) -> Self {
        Self {
            ring: Arc::clone(&self.ring),
            suspect: Suspect::default(),
        }
    }
}

impl<T: ShmSafe> fmt::Debug for Mpmc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpmc")
            .field("capacity", &self.ring.capacity)
            .finish_non_exhaustive()
    }
}

/// Creates a ring of at least `capacity` elements (a power of two, at least 2).
///
/// # Errors
///
/// [`SegmentError::InvalidSize`] for a capacity below 2 or above 2^30.
///
/// # Examples
///
/// ```
/// let q = shmproc_collections::mpmc::ring::<u32>(4)?;
/// let mut a = q.clone();
/// a.try_put(1).expect("room");
/// let mut b = q.clone();
/// assert_eq!(b.try_get(), Ok(1));
/// # Ok::<(), shmproc_core::SegmentError>(())
/// ```
pub fn ring<T: ShmSafe>(capacity: usize) -> Result<Mpmc<T>, SegmentError> {
    sync::membarrier_register();
    Ok(Mpmc {
        ring: Arc::new(Ring::create(capacity, None)?),
        suspect: Suspect::default(),
    })
}

#[cfg(not(loom))]
impl<T: ShmSafe> Mpmc<T> {
    /// Creates a ring as [`ring`] does, in a named segment that any process
    /// (not only one started by us) can open with [`Mpmc::open`].
    ///
    /// # Errors
    ///
    /// As [`ring`], and as [`Segment::create_named`] (a bad or taken name).
    pub fn create_named(name: &str, capacity: usize) -> Result<Self, SegmentError> {
        sync::membarrier_register();
        Ok(Self {
            ring: Arc::new(Ring::create(capacity, Some(name))?),
            suspect: Suspect::default(),
        })
    }

    /// Opens the named ring `name`, checking its segment, its element type
    /// and its layout as a received handle is checked.
    ///
    /// # Errors
    ///
    /// As [`Segment::open_named`]; [`SegmentError::TypeMismatch`] for
    /// another element type, [`SegmentError::BadPayload`] for a layout that
    /// is not an MPMC ring's.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        let seg = Segment::open_named(name, Some(&Ring::<T>::identity()))?;
        sync::membarrier_register();
        Ok(Self {
            ring: Arc::new(Ring::attach(seg)?),
            suspect: Suspect::default(),
        })
    }
}

/// Sleeps on `word` (expected `seen`) counted in `sleepers`, for one
/// liveness slice at most. Returns whether `deadline` passed.
fn sleep_counted(word: &Word, seen: u32, sleepers: &Word, deadline: Option<Deadline>) -> bool {
    // Relaxed + membarrier: the slow side of the handshake (module docs).
    sleepers.fetch_add(1, Relaxed);
    sync::membarrier_global();
    let slice = Deadline::after(Duration::from_millis(100));
    let until = deadline.map_or(slice, |d| d.min(slice));
    // Relaxed: the futex call itself compares the word.
    let r = if word.load(Relaxed) == seen {
        sync::futex_wait(word, seen, Some(until))
    } else {
        FutexWait::Retry
    };
    sleepers.fetch_sub(1, Relaxed);
    r == FutexWait::TimedOut && deadline.is_some_and(|d| d.has_passed())
}

#[inline]
fn wake_sleepers(word: &Word, sleepers: &Word) {
    // The fast side: a compiler barrier; the sleeper's membarrier supplies
    // the hardware one.
    sync::light_barrier();
    // Relaxed: ordered by the sleepers' membarrier.
    if sleepers.load(Relaxed) != 0 {
        sync::futex_wake(word, u32::MAX);
    }
}

#[cfg(not(loom))]
impl<T: ShmSafe> Serialize for Mpmc<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.seg.serialize(serializer)
    }
}

#[cfg(not(loom))]
impl<'de, T: ShmSafe> Deserialize<'de> for Mpmc<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ring = Ring::attach(Segment::deserialize(deserializer)?).map_err(serde::de::Error::custom)?;
        sync::membarrier_register();
        Ok(Self {
            ring: Arc::new(ring),
            suspect: Suspect::default(),
        })
    }
}

#[cfg(all(test, loom))]
impl<T: ShmSafe> Mpmc<T> {
    /// For the loom models: `enq`, `deq`, and the `seq` and `owner` words
    /// of the slot of `pos`, to stage what a killed process leaves behind.
    pub(crate) fn words(&self, pos: u32) -> [&Word; 4] {
        let (h, slot) = (self.ring.header(), self.ring.slot(pos));
        [&h.enq, &h.deq, &slot.seq, &slot.owner]
    }
}

mod ops;
pub use ops::TRY_HELD_SPINS;

// Segments and real threads: not under loom (see `loom_tests.rs`).
#[cfg(all(test, not(loom)))]
mod tests;
