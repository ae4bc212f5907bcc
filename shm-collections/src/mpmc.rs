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
use shm_core::{Segment, SegmentError, SegmentKind, ShmSafe, TypeIdentity};

#[cfg(not(loom))]
use crate::spsc::ring_capacity;
use crate::spsc::{HEADER, PushError, RingError, Word};
use crate::sync::{self, Instant};

/// Largest capacity.
pub const MAX_CAPACITY: usize = 1 << 30;
/// How long a non-blocking call watches one stuck slot before it checks
/// whether the process holding it died.
pub const STUCK: Duration = Duration::from_millis(10);
const SLOT_HEADER: usize = 16;

#[repr(C)]
#[cfg_attr(loom, derive(Default))]
struct Header {
    capacity: Word,
    push_sleepers: Word,
    pop_sleepers: Word,
    _pad0: [u32; 29],
    enq: Word,
    _pad1: [u32; 31],
    deq: Word,
    _pad2: [u32; 31],
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
    _pad: u32,
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

    #[cfg_attr(loom, allow(unused_variables, reason = "no segment: `total` is not needed"))]
    fn create(capacity: usize) -> Result<Self, SegmentError> {
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
        let seg = Segment::create(&Self::identity(), total)?;
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
/// a.try_push(1).expect("room");
/// let mut b = q.clone();
/// assert_eq!(b.try_pop(), Ok(1));
/// # Ok::<(), shm_core::SegmentError>(())
/// ```
pub fn ring<T: ShmSafe>(capacity: usize) -> Result<Mpmc<T>, SegmentError> {
    sync::membarrier_register();
    Ok(Mpmc {
        ring: Arc::new(Ring::create(capacity)?),
        suspect: Suspect::default(),
    })
}

enum Step<V> {
    Done(V),
    Retry,
    Blocked { slot_seq: u32, pos: u32 },
}

impl<T: ShmSafe> Mpmc<T> {
    /// Claims the slot of `pos` for this process, taking over a dead claim.
    fn claim(slot: &Slot, me: u32, check_dead: bool) -> Result<u32, ()> {
        // Acquire: orders us after the previous holder's Release of the claim.
        match slot.owner.compare_exchange(0, me, Acquire, Relaxed) {
            Ok(_) => Ok(0),
            Err(other) if check_dead && other != me && !sync::task_alive(other) => slot
                .owner
                .compare_exchange(other, me, Acquire, Relaxed)
                .map(|_| other)
                .map_err(|_| ()),
            Err(_) => Err(()),
        }
    }

    fn push_step(&mut self, value: &T, force_check: bool) -> Result<Step<()>, RingError> {
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
            let Ok(previous) = Self::claim(slot, me, ripe) else {
                return Ok(Step::Retry);
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
            // SAFETY: we hold position `pos` (claimed, enq moved past it);
            // no consumer reads the value before seq = pos + 1 below.
            unsafe { ring.value(pos).as_ptr().write(*value) };
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
            if d < -(cap.cast_signed()) {
                return Err(RingError::Corrupted("slot sequence more than a lap behind"));
            }
            return Ok(Step::Blocked { slot_seq: seq, pos });
        }
        Ok(Step::Retry)
    }

    fn pop_step(&mut self, force_check: bool) -> Result<Step<T>, RingError> {
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
            let Ok(previous) = Self::claim(slot, me, ripe) else {
                return Ok(Step::Retry);
            };
            // Release: pairs with the Acquire load of `deq` above (in others).
            if h.deq
                .compare_exchange(pos, pos.wrapping_add(1), Release, Relaxed)
                .is_err()
            {
                slot.owner.store(previous, Release);
                return Ok(Step::Retry);
            }
            // SAFETY: position `pos` is published (seq = pos + 1, Acquire)
            // and ours (claimed, deq moved past it); T accepts any bits.
            let value = unsafe { ring.value(pos).as_ptr().read() };
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
            if d < -(cap.cast_signed()) {
                return Err(RingError::Corrupted("slot sequence more than a lap behind"));
            }
            return Ok(Step::Blocked { slot_seq: seq, pos });
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

    /// Pushes without waiting.
    ///
    /// # Errors
    ///
    /// [`RingError::Full`] (value handed back), [`RingError::Corrupted`].
    pub fn try_push(&mut self, value: T) -> Result<(), PushError<T>> {
        loop {
            match self.push_step(&value, false) {
                Ok(Step::Done(())) => return Ok(()),
                Ok(Step::Retry) => sync::before_retry(),
                Ok(Step::Blocked { .. }) => {
                    return Err(PushError {
                        kind: RingError::Full,
                        value,
                    });
                }
                Err(kind) => return Err(PushError { kind, value }),
            }
        }
    }

    /// Pops without waiting.
    ///
    /// # Errors
    ///
    /// [`RingError::Empty`], [`RingError::Corrupted`].
    pub fn try_pop(&mut self) -> Result<T, RingError> {
        loop {
            match self.pop_step(false)? {
                Step::Done(v) => return Ok(v),
                Step::Retry => sync::before_retry(),
                Step::Blocked { .. } => return Err(RingError::Empty),
            }
        }
    }

    /// Pushes, waiting for room (up to `timeout` if given).
    ///
    /// # Errors
    ///
    /// [`RingError::Full`] on timeout, [`RingError::Corrupted`].
    pub fn push(&mut self, value: T, timeout: Option<Duration>) -> Result<(), PushError<T>> {
        let deadline = timeout.map(Deadline::after);
        let mut spins = shm_sync::park::spins();
        let mut force = false;
        loop {
            match self.push_step(&value, force) {
                Ok(Step::Done(())) => return Ok(()),
                Ok(Step::Retry) => sync::before_retry(),
                Err(kind) => return Err(PushError { kind, value }),
                Ok(Step::Blocked { slot_seq, pos }) => {
                    if spins > 0 {
                        spins -= 1;
                        core::hint::spin_loop();
                        continue;
                    }
                    let ring = &*self.ring;
                    let slot = ring.slot(pos);
                    let timed_out = sleep_counted(&slot.seq, slot_seq, &ring.header().push_sleepers, deadline);
                    if timed_out {
                        return Err(PushError {
                            kind: RingError::Full,
                            value,
                        });
                    }
                    // After a sleep slice, look for a dead holder at once.
                    force = true;
                }
            }
        }
    }

    /// Pops, waiting for a message (up to `timeout` if given).
    ///
    /// # Errors
    ///
    /// [`RingError::Empty`] on timeout, [`RingError::Corrupted`].
    pub fn pop(&mut self, timeout: Option<Duration>) -> Result<T, RingError> {
        let deadline = timeout.map(Deadline::after);
        let mut spins = shm_sync::park::spins();
        let mut force = false;
        loop {
            match self.pop_step(force)? {
                Step::Done(v) => return Ok(v),
                Step::Retry => sync::before_retry(),
                Step::Blocked { slot_seq, pos } => {
                    if spins > 0 {
                        spins -= 1;
                        core::hint::spin_loop();
                        continue;
                    }
                    let ring = &*self.ring;
                    let slot = ring.slot(pos);
                    if sleep_counted(&slot.seq, slot_seq, &ring.header().pop_sleepers, deadline) {
                        return Err(RingError::Empty);
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
        let ring = Ring::attach(Segment::deserialize(deserializer)?).map_err(shm_core::handle::decode_error)?;
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
mod tests {
    use super::*;

    #[test]
    fn fifo_full_empty_wrap() {
        let mut q = ring::<u32>(3).expect("create");
        assert_eq!(q.capacity(), 4);
        for i in 0..4 {
            q.try_push(i).expect("room");
        }
        assert_eq!(q.try_push(9).map_err(|e| (e.kind, e.value)), Err((RingError::Full, 9)));
        for i in 0..4 {
            assert_eq!(q.try_pop(), Ok(i));
        }
        assert_eq!(q.try_pop(), Err(RingError::Empty));
        for i in 0..if cfg!(miri) { 100 } else { 10_000 } {
            q.try_push(i).expect("room");
            assert_eq!(q.try_pop(), Ok(i));
        }
        assert!(ring::<u8>(1).is_err() && ring::<u8>(MAX_CAPACITY + 1).is_err());
    }

    #[test]
    fn many_threads_lose_and_duplicate_nothing() {
        const PER: u64 = if cfg!(miri) { 300 } else { 20_000 };
        let q = ring::<u64>(16).expect("create");
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let mut q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        q.push(p << 32 | i, None).expect("room eventually");
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let mut q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(v) = q.pop(Some(Duration::from_millis(500))) {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().expect("producer");
        }
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().expect("consumer"))
            .collect();
        assert_eq!(all.len() as u64, 3 * PER, "nothing lost");
        // Per producer, in order within each consumer; overall each exactly once.
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, 3 * PER, "nothing duplicated");
    }

    #[test]
    fn a_dead_producers_unpublished_slot_becomes_a_skipped_tombstone() {
        let mut q = ring::<u32>(4).expect("create");
        q.try_push(1).expect("room");
        // Simulate a producer that claimed position 1 and died before
        // publishing: enq moved past it, owner names a process that is gone.
        let h = q.ring.header();
        h.enq.store(2, Relaxed);
        q.ring.slot(1).owner.store(0x3fff_fff0, Relaxed);
        q.try_push(3).expect("room");
        assert_eq!(q.try_pop(), Ok(1));
        // Non-blocking pops watch the stuck slot for STUCK before checking.
        assert_eq!(q.pop(Some(Duration::from_secs(5))), Ok(3));
        assert_eq!(q.try_pop(), Err(RingError::Empty));
    }

    #[test]
    fn a_dead_consumers_slot_is_recycled() {
        let mut q = ring::<u32>(2).expect("create");
        q.try_push(1).expect("room");
        q.try_push(2).expect("room");
        // A consumer took position 0 (deq moved) and died before recycling.
        q.ring.header().deq.store(1, Relaxed);
        q.ring.slot(0).owner.store(0x3fff_fff0, Relaxed);
        q.push(3, Some(Duration::from_secs(5)))
            .expect("the dead consumer's slot is recycled");
        assert_eq!(q.try_pop(), Ok(2));
        assert_eq!(q.try_pop(), Ok(3));
    }
}
