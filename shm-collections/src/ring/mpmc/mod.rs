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
//! ([`shm_core::atomic::copy`]), so a scribbled value is a wrong value,
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
use shm_core::sys::{Deadline, FutexWait};
use shm_core::{
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
/// let q = shm_collections::mpmc::ring::<u32>(4)?;
/// let mut a = q.clone();
/// a.try_put(1).expect("room");
/// let mut b = q.clone();
/// assert_eq!(b.try_get(), Ok(1));
/// # Ok::<(), shm_core::SegmentError>(())
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

enum Step<V> {
    Done(V),
    /// Someone else made progress: look again.
    Retry,
    /// The slot of `pos` is claimed by `owner`, who should move on at once.
    Held {
        pos: u32,
        owner: u32,
    },
    Blocked {
        slot_seq: u32,
        pos: u32,
    },
}

/// Watches a claim that another side holds: one that stays put (same
/// position, same owner, the owner alive) for [`CLAIM_BOUND`] is a scribbled
/// owner word, and the call returns [`Fault::Stalled`] instead of
/// spinning on it forever.
#[derive(Default)]
struct Stall {
    pos: u32,
    owner: u32,
    since: Option<Instant>,
}

impl Stall {
    fn check(&mut self, pos: u32, owner: u32) -> Result<(), Fault> {
        match self.since {
            Some(t) if self.pos == pos && self.owner == owner => {
                // Loom's clock has no time: its models bound the loops.
                let waited = t.elapsed();
                if cfg!(not(loom)) && waited >= CLAIM_BOUND {
                    return Err(Fault::Stalled {
                        object: OBJECT,
                        pid: owner,
                        waited,
                    });
                }
                Ok(())
            }
            _ => {
                *self = Self {
                    pos,
                    owner,
                    since: Some(Instant::now()),
                };
                Ok(())
            }
        }
    }
}

/// The error for a slot sequence number outside what a legal history
/// allows at `pos`.
#[cold]
fn bad_seq(side: &'static str, pos: u32, legal: &[u32], seq: u32) -> Fault {
    let legal: Vec<String> = legal.iter().map(u32::to_string).collect();
    Fault::corrupted(
        OBJECT,
        side,
        format_args!("{} (at position {pos})", legal.join(" or ")),
        seq,
    )
}

impl<T: ShmSafe> Mpmc<T> {
    /// Claims the slot of `pos` for this process, taking over a dead claim;
    /// on failure, the holder.
    fn claim(slot: &Slot, me: u32, check_dead: bool) -> Result<u32, u32> {
        // Acquire: orders us after the previous holder's Release of the claim.
        match slot.owner.compare_exchange(0, me, Acquire, Relaxed) {
            Ok(_) => Ok(0),
            Err(other) if check_dead && other != me && !sync::task_alive(other) => {
                slot.owner.compare_exchange(other, me, Acquire, Relaxed).map(|_| other)
            }
            Err(other) => Err(other),
        }
    }

    fn push_step(&mut self, value: &T, force_check: bool) -> Result<Step<()>, Fault> {
        let ring = &*self.ring;
        let h = ring.header();
        let cap = ring.capacity;
        let me = sync::cached_pid();
        // Acquire: pairs with the Release of the CAS that moved `enq` here,
        // so that the slot's sequence number reads at least as new as the
        // previous lap's (a staler one would look like a corrupted slot).
        let pos = h.enq.load(Acquire);
        let slot = ring.slot(pos);
        // Acquire: pairs with the consumer's Release recycling the slot.
        let seq = slot.seq.load(Acquire);
        let d = seq.wrapping_sub(pos).cast_signed();
        if d == 0 {
            let ripe = self.suspect.ripe(pos, force_check);
            let previous = match Self::claim(slot, me, ripe) {
                Ok(previous) => previous,
                Err(owner) => return Ok(Step::Held { pos, owner }),
            };
            // Release: pairs with the Acquire load of `enq` above (in others).
            if h.enq
                .compare_exchange(pos, pos.wrapping_add(1), Release, Relaxed)
                .is_err()
            {
                // Someone moved on; give the claim back as it was.
                slot.owner.store(previous, Release);
                return Ok(Step::Retry);
            }
            // SAFETY: the value slot of `pos` is inside the ring (masked), and
            // we hold position `pos` (claimed, enq moved past it): no
            // consumer reads it before seq = pos + 1 below; an atomic-word
            // copy (`copy`), so a peer writing it anyway is no data race.
            unsafe { store_slot(ring.value(pos).as_ptr(), *value) };
            // Relaxed: published by the Release store of seq below.
            slot.tomb.store(0, Relaxed);
            // Release: publishes the value to the consumer of `pos`.
            slot.seq.store(pos.wrapping_add(1), Release);
            slot.owner.store(0, Release);
            wake_sleepers(&slot.seq, &h.pop_sleepers);
            return Ok(Step::Done(()));
        }
        if d < 0 {
            // The slot still holds the message of position pos - cap. If its
            // consumer took it (deq moved on) and died, recycle the slot.
            let previous = pos.wrapping_sub(cap);
            if seq == previous.wrapping_add(1) && h.deq.load(Relaxed).wrapping_sub(previous).cast_signed() > 0 {
                let owner = slot.owner.load(Relaxed);
                if owner != 0 && self.suspect.ripe(pos, force_check) && !sync::task_alive(owner) {
                    if slot.seq.compare_exchange(seq, pos, Release, Relaxed).is_ok() {
                        let _ = slot.owner.compare_exchange(owner, 0, Release, Relaxed);
                    }
                    return Ok(Step::Retry);
                }
            }
            // Legal here: the previous lap's producer has not published yet
            // (pos - cap) or its message waits for its consumer (pos - cap + 1);
            // the Acquire load of `enq` keeps older values out of sight.
            if seq != previous && seq != previous.wrapping_add(1) {
                return Err(bad_seq(
                    "slot sequence (push side)",
                    pos,
                    &[pos, previous, previous.wrapping_add(1)],
                    seq,
                ));
            }
            return Ok(Step::Blocked { slot_seq: seq, pos });
        }
        // The slot is ahead of `pos`: whoever took `pos` moved `enq` past it
        // before writing `seq`, and our Acquire load of `seq` orders that
        // move before the load below. If `enq` still reads `pos`, a peer
        // wrote over the sequence number (or over `enq`).
        // Acquire: as the load of `enq` above.
        if h.enq.load(Acquire) == pos {
            return Err(bad_seq(
                "slot sequence (push side, ahead of enq)",
                pos,
                &[pos, pos.wrapping_sub(cap), pos.wrapping_sub(cap).wrapping_add(1)],
                seq,
            ));
        }
        Ok(Step::Retry)
    }

    fn pop_step(&mut self, force_check: bool) -> Result<Step<T>, Fault> {
        let ring = &*self.ring;
        let h = ring.header();
        let cap = ring.capacity;
        let me = sync::cached_pid();
        // Acquire: as in `push_step`, with the Release CAS of `deq`.
        let pos = h.deq.load(Acquire);
        let slot = ring.slot(pos);
        // Acquire: pairs with the producer's Release publishing `pos`.
        let seq = slot.seq.load(Acquire);
        let d = seq.wrapping_sub(pos.wrapping_add(1)).cast_signed();
        if d == 0 {
            let ripe = self.suspect.ripe(pos, force_check);
            let previous = match Self::claim(slot, me, ripe) {
                Ok(previous) => previous,
                Err(owner) => return Ok(Step::Held { pos, owner }),
            };
            // Release: pairs with the Acquire load of `deq` above (in others).
            if h.deq
                .compare_exchange(pos, pos.wrapping_add(1), Release, Relaxed)
                .is_err()
            {
                slot.owner.store(previous, Release);
                return Ok(Step::Retry);
            }
            // SAFETY: the value slot of `pos` is inside the ring (masked);
            // position `pos` is published (seq = pos + 1, Acquire) and ours
            // (claimed, deq moved past it); an atomic-word copy (`copy`), so
            // a peer writing it anyway tears it, no data race; T accepts any
            // bits.
            let value = unsafe { load_slot(ring.value(pos).as_ptr()) };
            // Relaxed: ordered by the Acquire load of seq above.
            let tomb = slot.tomb.load(Relaxed) != 0;
            // Release: hands the slot to the producer of the next lap.
            slot.seq.store(pos.wrapping_add(cap), Release);
            slot.owner.store(0, Release);
            wake_sleepers(&slot.seq, &h.push_sleepers);
            // A tombstone stands for a message whose producer died writing it.
            return Ok(if tomb { Step::Retry } else { Step::Done(value) });
        }
        if d < 0 {
            // Unpublished. If a producer claimed `pos` (enq moved past it)
            // and died before publishing, publish a tombstone instead.
            if seq == pos && h.enq.load(Relaxed).wrapping_sub(pos).cast_signed() > 0 {
                let owner = slot.owner.load(Relaxed);
                if owner != 0 && self.suspect.ripe(pos, force_check) && !sync::task_alive(owner) {
                    self.tombstone(slot, pos, owner);
                    return Ok(Step::Retry);
                }
            }
            // Legal here: not yet published (pos), or the previous lap's
            // consumer has not recycled it yet (pos - cap + 1).
            let previous = pos.wrapping_sub(cap).wrapping_add(1);
            if seq != pos && seq != previous {
                return Err(bad_seq(
                    "slot sequence (pop side)",
                    pos,
                    &[pos.wrapping_add(1), pos, previous],
                    seq,
                ));
            }
            return Ok(Step::Blocked { slot_seq: seq, pos });
        }
        // Ahead of `pos`: as in `push_step`, `deq` must have moved.
        // Acquire: as the load of `deq` above.
        if h.deq.load(Acquire) == pos {
            return Err(bad_seq(
                "slot sequence (pop side, ahead of deq)",
                pos,
                &[pos.wrapping_add(1), pos, pos.wrapping_sub(cap).wrapping_add(1)],
                seq,
            ));
        }
        Ok(Step::Retry)
    }

    /// Publishes a tombstone in the slot of `pos`, whose producer `dead`
    /// claimed it and died before publishing. The claim is taken over
    /// first: only the holder of a slot writes it, so a consumer that comes
    /// late (say a lap later, after another one did the work) finds the
    /// claim gone and cannot mark a live message as dead.
    #[cold]
    fn tombstone(&self, slot: &Slot, pos: u32, dead: u32) {
        // Acquire: orders us after the previous holder's Release of the claim.
        if slot
            .owner
            .compare_exchange(dead, sync::cached_pid(), Acquire, Relaxed)
            .is_err()
        {
            return;
        }
        // Relaxed: the slot cannot move while we hold its claim.
        let unpublished = slot.seq.load(Relaxed) == pos;
        if unpublished {
            // Relaxed: published by the Release store of seq below.
            slot.tomb.store(1, Relaxed);
            // Release: publishes the tombstone to the consumer of `pos`.
            slot.seq.store(pos.wrapping_add(1), Release);
        }
        // Release: hands the claim on (given back as it was if the slot had
        // moved, which the claim should have made impossible).
        slot.owner.store(if unpublished { 0 } else { dead }, Release);
        wake_sleepers(&slot.seq, &self.ring.header().pop_sleepers);
    }

    /// Puts without waiting (it retries a moment only while another
    /// process is between the steps of its own put or get).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (value handed back), [`TrySendError::Fault`]:
    /// [`Fault::Corrupted`] for a slot word no legal history produces,
    /// [`Fault::Stalled`] for a live claimant that never moves.
    pub fn try_put(&mut self, value: T) -> Result<(), TrySendError<T>> {
        let mut stall = Stall::default();
        loop {
            match self.push_step(&value, false) {
                Ok(Step::Done(())) => return Ok(()),
                Ok(Step::Retry) => sync::before_retry(),
                Ok(Step::Held { pos, owner }) => {
                    if let Err(f) = stall.check(pos, owner) {
                        return Err(TrySendError::Fault(value, f));
                    }
                    sync::before_retry();
                }
                Ok(Step::Blocked { .. }) => return Err(TrySendError::Full(value)),
                Err(f) => return Err(TrySendError::Fault(value, f)),
            }
        }
    }

    /// Gets without waiting (see [`Mpmc::try_put`]).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], [`TryRecvError::Fault`] (as in
    /// [`Mpmc::try_put`]).
    pub fn try_get(&mut self) -> Result<T, TryRecvError> {
        let mut stall = Stall::default();
        loop {
            match self.pop_step(false).map_err(TryRecvError::Fault)? {
                Step::Done(v) => return Ok(v),
                Step::Retry => sync::before_retry(),
                Step::Held { pos, owner } => {
                    stall.check(pos, owner).map_err(TryRecvError::Fault)?;
                    sync::before_retry();
                }
                Step::Blocked { .. } => return Err(TryRecvError::Empty),
            }
        }
    }

    /// Puts, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`SendError::Fault`] (as in [`Mpmc::try_put`]); an MPMC ring is
    /// never disconnected.
    pub fn put(&mut self, value: T) -> Result<(), SendError<T>> {
        self.put_until(value, None).map_err(|(v, stop)| stop.send(v))
    }

    /// Puts, waiting for room up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with `timeout`),
    /// [`SendTimeoutError::Fault`].
    pub fn put_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.put_until(value, Some(Deadline::after(timeout)))
            .map_err(|(v, stop)| stop.send_timeout(v, timeout))
    }

    fn put_until(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), (T, Stop)> {
        let mut spins = shm_sync::park::spins();
        let mut force = false;
        let mut stall = Stall::default();
        loop {
            match self.push_step(&value, force) {
                Ok(Step::Done(())) => return Ok(()),
                Ok(Step::Retry) => sync::before_retry(),
                Ok(Step::Held { pos, owner }) => {
                    if deadline.is_some_and(|d| d.has_passed()) {
                        return Err((value, Stop::Timeout));
                    }
                    if let Err(f) = stall.check(pos, owner) {
                        return Err((value, Stop::Fault(f)));
                    }
                    sync::before_retry();
                }
                Err(f) => return Err((value, Stop::Fault(f))),
                Ok(Step::Blocked { slot_seq, pos }) => {
                    if spins > 0 {
                        spins -= 1;
                        core::hint::spin_loop();
                        continue;
                    }
                    let ring = &*self.ring;
                    let slot = ring.slot(pos);
                    if sleep_counted(&slot.seq, slot_seq, &ring.header().push_sleepers, deadline) {
                        return Err((value, Stop::Timeout));
                    }
                    // After a sleep slice, look for a dead holder at once.
                    force = true;
                }
            }
        }
    }

    /// Gets, waiting for a message as long as needed.
    ///
    /// # Errors
    ///
    /// [`RecvError::Fault`] (as in [`Mpmc::try_put`]).
    pub fn get(&mut self) -> Result<T, RecvError> {
        self.get_until(None).map_err(Stop::recv)
    }

    /// Gets, waiting for a message up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] (with `timeout`),
    /// [`RecvTimeoutError::Fault`].
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.get_until(Some(Deadline::after(timeout)))
            .map_err(|stop| stop.recv_timeout(timeout))
    }

    fn get_until(&mut self, deadline: Option<Deadline>) -> Result<T, Stop> {
        let mut spins = shm_sync::park::spins();
        let mut force = false;
        let mut stall = Stall::default();
        loop {
            match self.pop_step(force).map_err(Stop::Fault)? {
                Step::Done(v) => return Ok(v),
                Step::Retry => sync::before_retry(),
                Step::Held { pos, owner } => {
                    if deadline.is_some_and(|d| d.has_passed()) {
                        return Err(Stop::Timeout);
                    }
                    stall.check(pos, owner).map_err(Stop::Fault)?;
                    sync::before_retry();
                }
                Step::Blocked { slot_seq, pos } => {
                    if spins > 0 {
                        spins -= 1;
                        core::hint::spin_loop();
                        continue;
                    }
                    let ring = &*self.ring;
                    let slot = ring.slot(pos);
                    if sleep_counted(&slot.seq, slot_seq, &ring.header().pop_sleepers, deadline) {
                        return Err(Stop::Timeout);
                    }
                    force = true;
                }
            }
        }
    }

    /// Messages published and not yet taken (a snapshot).
    pub fn len(&self) -> usize {
        let h = self.ring.header();
        // Relaxed: a snapshot.
        let (enq, deq) = (h.enq.load(Relaxed), h.deq.load(Relaxed));
        (enq.wrapping_sub(deq) as usize).min(self.ring.capacity as usize)
    }

    /// Whether no message is waiting now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
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

// Segments and real threads: not under loom (see `loom_tests.rs`).
#[cfg(all(test, not(loom)))]
mod tests;
