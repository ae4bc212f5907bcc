//! A bounded single-producer single-consumer ring of plain data in shared
//! memory: wait-free `try_push`/`try_pop`, batches, loans (write a slot in
//! place, then commit; read a slot in place, then release), and blocking
//! `push`/`pop` with optional timeouts.
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
//! (see [`shm_core::sys::membarrier_active`]). A wake is never left to the
//! liveness slice either way.
//!
//! # Dead peers and bad input
//!
//! Each side records its process when it first acts in a process. A
//! sleeper checks every [`LIVENESS_SLICE`](shm_core::LIVENESS_SLICE)
//! (100 ms) that its peer still runs; if the peer closed
//! its end or died, a blocked `push` hands the value back and a blocked
//! `pop` drains what is left and then reports the disconnection. A message
//! is published only after it is completely written, so a producer killed
//! mid-write never publishes half a message. Indices read from shared memory
//! are checked: a distance larger than the capacity means a peer scribbled
//! on the header, and is reported as [`RingError::Corrupted`], never used.
//!
//! The copying paths (`try_push`, `push_slice`, `try_pop`, `pop_into` and
//! the blocking calls built on them) move a slot through relaxed atomic
//! words ([`shm_core::atomic::copy`]): the index stores and loads order
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
use shm_core::atomic::copy;
use shm_core::sys::{Deadline, FutexWait};
use shm_core::{Segment, SegmentError, SegmentKind, ShmSafe, TypeIdentity};

use crate::sync;

/// An `AtomicU32` of the shared header (shared memory: `core`'s type; under
/// loom, loom's, and the header is heap memory).
pub(crate) type Word = sync::AtomicU32;

/// Bytes of the header before the first slot: three 128-byte lines.
pub(crate) const HEADER: usize = 384;
/// Largest capacity.
pub const MAX_CAPACITY: usize = 1 << 30;

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

/// Why a ring operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The ring is full (non-blocking push, or the timeout passed).
    #[error("the ring is full")]
    Full,
    /// The ring is empty (non-blocking pop, or the timeout passed).
    #[error("the ring is empty")]
    Empty,
    /// The other end was closed or its process died.
    #[error("the other end of the ring is closed or its process died")]
    Disconnected,
    /// Shared indices are impossible: a peer wrote over the header.
    #[error("corrupted ring: {0}")]
    Corrupted(&'static str),
    /// A shared word holds a value that no legal history of the ring
    /// produces (a peer wrote over it): which word, what a legal state
    /// allows there, and what was found.
    #[error("corrupted ring: {what}: expected {expected}, found {found}")]
    CorruptedWord {
        /// The word.
        what: &'static str,
        /// What a legal state allows there.
        expected: String,
        /// What it holds.
        found: u64,
    },
    /// A byte-ring loan was asked for more than one frame holds (half the
    /// ring), or the message at the head was streamed in parts.
    #[error("the message does not fit in one frame of the ring")]
    TooLarge,
}

/// A push that failed, with the value handed back.
pub struct PushError<T> {
    /// Why.
    pub kind: RingError,
    /// The value that was not pushed.
    pub value: T,
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl<T> std::error::Error for PushError<T> {}

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

    #[cfg_attr(loom, allow(unused_variables, reason = "no segment: `bytes` is not needed"))]
    fn create(capacity: usize) -> Result<Self, SegmentError> {
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
        let seg = Segment::create(&Self::identity(), bytes)?;
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

/// How a sleep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slept {
    /// Woken, or the condition already held: look again.
    Woken,
    /// A liveness slice passed: look again, and check the peer is alive.
    SliceOver,
    /// The caller's deadline passed.
    DeadlinePassed,
}

/// Checks a received ring segment: its type, and a capacity (the first
/// header word) that is a power of two from `min` to [`MAX_CAPACITY`] and
/// for which `total(capacity)` is exactly the payload length.
#[cfg(not(loom))]
pub(crate) fn ring_capacity<T>(
    seg: &Segment,
    id: &TypeIdentity,
    min: u32,
    total: impl Fn(usize) -> Option<usize>,
) -> Result<u32, SegmentError> {
    seg.check_type(id)?;
    let payload = seg.payload_len();
    let bad = SegmentError::BadPayload {
        len: payload as u64,
        elem_size: size_of::<T>() as u64,
    };
    if payload < HEADER {
        return Err(bad);
    }
    // SAFETY: the payload holds at least a header (checked above) and is
    // 128-aligned; both ring headers start with their capacity word, and an
    // atomic accepts any bits.
    let word = unsafe { seg.payload().cast::<Word>().as_ref() };
    // Relaxed: written once before the ring was shared.
    let capacity = word.load(Relaxed);
    let fits = capacity.is_power_of_two()
        && capacity >= min
        && capacity as usize <= MAX_CAPACITY
        && total(capacity as usize) == Some(payload);
    if fits { Ok(capacity) } else { Err(bad) }
}

/// The value a sleeper raises its flag to: nonzero, and naming the value
/// of the word it waits to see change (the top bit is lost, harmlessly:
/// see `wake_sleeper`).
fn raised(seen: u32) -> u32 {
    seen | 1 << 31
}

/// Sleeps on `word` (expected `seen`) after raising `flag`, unless `ready()`
/// turns true once the flag is visible; one liveness slice at most.
pub(crate) fn sleep_on(
    word: &Word,
    seen: u32,
    flag: &Word,
    deadline: Option<Deadline>,
    ready: impl Fn() -> bool,
) -> Slept {
    // Relaxed + membarrier: the slow side of the handshake (module docs).
    flag.store(raised(seen), Relaxed);
    sync::membarrier_global();
    let slept = if ready() {
        Slept::Woken
    } else {
        let slice = Deadline::after(shm_core::LIVENESS_SLICE);
        let until = deadline.map_or(slice, |d| d.min(slice));
        match sync::futex_wait(word, seen, Some(until)) {
            FutexWait::TimedOut if deadline.is_some_and(|d| d.has_passed()) => Slept::DeadlinePassed,
            FutexWait::TimedOut => Slept::SliceOver,
            FutexWait::Retry => Slept::Woken,
        }
    };
    flag.store(0, Relaxed);
    slept
}

/// Wakes the other side if it said it sleeps.
#[inline]
pub(crate) fn wake_if_sleeping(word: &Word, flag: &Word) {
    // The fast side of the handshake: a compiler barrier only; the
    // sleeper's membarrier supplies the hardware one.
    sync::light_barrier();
    // Relaxed: ordered by the membarrier of whoever raised it.
    let up = flag.load(Relaxed);
    if up != 0 {
        wake_sleeper(word, flag, up);
    }
}

/// Wakes a sleeper that raised `flag` to `up`, and takes the flag down, so
/// that a sleeper that has not run yet costs one wake, not one per message
/// (it raises the flag again if it sleeps again). A take-down between its
/// raise and its futex call is harmless when `word` no longer holds what
/// the sleeper saw: the futex call returns at once. But a waker late with
/// a value the sleeper already saw (it then waits for the next one) leaves
/// the flag up for that next one: taken down, the next waker would not
/// wake, and the sleeper would wait a whole liveness slice (loom found it).
/// Equal top-bit-less values read as "already seen": that costs a wake more
/// later, never one less.
#[cold]
pub(crate) fn wake_sleeper(word: &Word, flag: &Word, up: u32) {
    // Relaxed: our own last store of `word`, or a newer one.
    let seen_already = up == raised(word.load(Relaxed));
    // Relaxed: the flag only says whom to wake; 0 there means the sleeper
    // (or another waker, which woke it) took it down since.
    if seen_already || flag.compare_exchange(up, 0, Relaxed, Relaxed) != Err(0) {
        sync::futex_wake(word, 1);
    }
}

/// A receiving end that can wait: what the blocking loop of [`receive`]
/// needs from it.
pub(crate) trait Receive {
    type Item;
    /// One attempt that does not wait.
    fn attempt(&mut self) -> Result<Self::Item, RingError>;
    /// Whether the sender closed its end or (when `check_alive`) died.
    fn sender_gone(&self, check_alive: bool) -> bool;
    /// Sleeps until something may have come, one liveness slice at most.
    fn sleep(&self, deadline: Option<Deadline>) -> Slept;
}

/// The blocking receive: spin a while, then sleep in liveness slices; a
/// sender that closed or died ends the wait once what it sent is received.
pub(crate) fn receive<E: Receive>(end: &mut E, deadline: Option<Deadline>) -> Result<E::Item, RingError> {
    let mut spins = shm_sync::park::spins();
    let mut slice_over = false;
    loop {
        match end.attempt() {
            Err(RingError::Empty) => {}
            other => return other,
        }
        if spins > 0 {
            spins -= 1;
            core::hint::spin_loop();
            continue;
        }
        if end.sender_gone(slice_over) {
            // Whatever it sent before dying is still delivered.
            return match end.attempt() {
                Err(RingError::Empty) => Err(RingError::Disconnected),
                other => other,
            };
        }
        match end.sleep(deadline) {
            Slept::DeadlinePassed => return Err(RingError::Empty),
            slept => slice_over = slept == Slept::SliceOver,
        }
    }
}

/// Makes `role` name this process, registering it for the membarrier
/// handshake the first time.
pub(crate) fn claim(role: &Word) {
    let me = sync::cached_pid();
    // Relaxed: an owner id for liveness checks only.
    if role.load(Relaxed) != me {
        role.store(me, Relaxed);
        sync::membarrier_register();
    }
}

/// Whether the peer closed its end, or (only when `check_alive`, since it
/// reads `/proc`) its process died.
pub(crate) fn peer_gone(closed: u32, bit: u32, peer: &Word, check_alive: bool) -> bool {
    // Relaxed: an owner id for a liveness check.
    let pid = peer.load(Relaxed);
    closed & bit != 0 || (check_alive && pid != 0 && !sync::task_alive(pid))
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
/// let (mut tx, mut rx) = shm_collections::spsc::channel::<u64>(4)?;
/// tx.try_push(7).expect("room");
/// assert_eq!(rx.try_pop(), Ok(7));
/// assert_eq!(rx.try_pop(), Err(shm_collections::spsc::RingError::Empty));
/// # Ok::<(), shm_core::SegmentError>(())
/// ```
pub fn channel<T: ShmSafe>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), SegmentError> {
    sync::membarrier_register();
    let ring = Arc::new(Ring::<T>::create(capacity)?);
    Ok((Producer::new(Arc::clone(&ring)), Consumer::new(ring)))
}

/// Whether slots of `T` are copied as bytes ([`copy::load_bytes`], 8-byte
/// words over the slot) rather than in `T`'s own unit ([`copy::load`]):
/// for types of alignment below 8 and 16 bytes or more (byte arrays,
/// mostly), whose own unit would be a byte or two and a 64 KiB copy tens of
/// thousands of atomic loads. Ring slots are never the target of atomic
/// read-modify-writes, and both ends of a ring make this same choice for
/// the same slot (the alignment pattern of a slot is that of its offset in
/// the segment), so their accesses to a slot have the same sizes.
const fn as_bytes<T>() -> bool {
    align_of::<T>() < 8 && size_of::<T>() >= 16
}

/// Reads a slot's `T` from shared memory through relaxed atomic words.
///
/// # Safety
///
/// As [`copy::load`]: `src` aligned, in a live mapping, valid for a `T`, and
/// every access others make to it atomic.
#[inline(always)]
#[allow(clippy::inline_always, reason = "the ring's hot path")]
pub(crate) unsafe fn load_slot<T: ShmSafe>(src: *const T) -> T {
    if as_bytes::<T>() {
        let mut out = std::mem::MaybeUninit::<T>::zeroed();
        // SAFETY: `out` is private and its bytes are initialised (zeroed),
        // so a byte slice over them is valid.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), size_of::<T>()) };
        // SAFETY: the caller's contract for `src`, as bytes.
        unsafe { copy::load_bytes(src.cast::<u8>(), bytes) };
        // SAFETY: every byte written; T (FromBytes) accepts any bits.
        unsafe { out.assume_init() }
    } else {
        // SAFETY: the caller's contract.
        unsafe { copy::load(src) }
    }
}

/// Writes a slot's `T` to shared memory through relaxed atomic words, in
/// the units [`load_slot`] reads them in.
///
/// # Safety
///
/// As [`copy::store`].
#[inline(always)]
#[allow(clippy::inline_always, reason = "the ring's hot path")]
pub(crate) unsafe fn store_slot<T: ShmSafe>(dst: *mut T, value: T) {
    if as_bytes::<T>() {
        // SAFETY: `value` is a private local and T (IntoBytes) has no
        // padding: all its bytes are initialised.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const value).cast::<u8>(), size_of::<T>()) };
        // SAFETY: the caller's contract for `dst`, as bytes.
        unsafe { copy::store_bytes(dst.cast::<u8>(), bytes) };
    } else {
        // SAFETY: the caller's contract.
        unsafe { copy::store(dst, value) };
    }
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
        fn h(&self) -> &Header {
            // SAFETY: `at.header` is `ring.header()`, alive while `ring` is.
            unsafe { self.at.header.as_ref() }
        }

        /// Pointer to the slot of position `pos`.
        #[inline]
        fn slot(&self, pos: u32) -> NonNull<T> {
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
        fn closed_bits(&self) -> u32 {
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

impl<T: ShmSafe> Producer<T> {
    cached_ring!();

    fn new(ring: Arc<Ring<T>>) -> Self {
        Self {
            at: At::of(&ring),
            ring,
            tail: 0,
            cached_head: 0,
            claimed: 0,
        }
    }

    #[inline]
    fn claim(&mut self) {
        let me = sync::cached_pid();
        if self.claimed != me {
            claim(&self.h().producer);
            // Relaxed: our own index, last published by us (or a previous
            // owner of this end that handed it over).
            self.tail = self.h().tail.load(Relaxed);
            // Acquire: as in `free_fresh`.
            self.cached_head = self.h().head.load(Acquire);
            self.claimed = me;
        }
    }

    /// Free slots as last seen (a lower bound).
    fn free(&mut self) -> Result<u32, RingError> {
        let used = self.tail.wrapping_sub(self.cached_head);
        if used > self.at.capacity {
            return Err(RingError::Corrupted("head ahead of tail or beyond capacity"));
        }
        Ok(self.at.capacity - used)
    }

    /// Free slots, re-reading the consumer's index if the cache says none.
    #[inline]
    fn free_fresh(&mut self, want: u32) -> Result<u32, RingError> {
        let free = self.free()?;
        if free >= want {
            return Ok(free);
        }
        // Acquire: pairs with the Release store of `head` in the consumer;
        // the slots it handed back are ours to overwrite.
        self.cached_head = self.h().head.load(Acquire);
        self.free()
    }

    #[inline]
    fn publish(&mut self, n: u32) {
        self.tail = self.tail.wrapping_add(n);
        let h = self.h();
        // Release: pairs with the consumer's Acquire load of `tail`.
        h.tail.store(self.tail, Release);
        wake_if_sleeping(&h.tail, &h.consumer_sleeping);
    }

    /// Pushes without waiting.
    ///
    /// # Errors
    ///
    /// [`RingError::Full`] (value handed back), [`RingError::Disconnected`]
    /// once the consumer closed, [`RingError::Corrupted`].
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.claim();
        match self.free_fresh(1) {
            Ok(0) => {
                let kind = if self.closed_bits() & CONSUMER_CLOSED != 0 {
                    RingError::Disconnected
                } else {
                    RingError::Full
                };
                return Err(PushError { kind, value });
            }
            Ok(_) => {}
            Err(kind) => return Err(PushError { kind, value }),
        }
        // SAFETY: the slot at `tail` is inside the ring (masked) and free
        // (free >= 1): the consumer does not read it until `tail` is
        // published below; a scribbling peer's racing accesses are atomic
        // too (`copy`), so they tear the value, never race.
        unsafe { store_slot(self.slot(self.tail).as_ptr(), value) };
        self.publish(1);
        Ok(())
    }

    /// Pushes, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`RingError::Disconnected`] when the consumer closed or died.
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.push_until(value, None)
    }

    /// Pushes, waiting for room up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RingError::Full`] on timeout, [`RingError::Disconnected`].
    pub fn push_timeout(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(value, Some(Deadline::after(timeout)))
    }

    fn push_until(&mut self, mut value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        let mut spins = shm_sync::park::spins();
        let mut slice_over = false;
        loop {
            match self.try_push(value) {
                Err(PushError {
                    kind: RingError::Full,
                    value: v,
                }) => value = v,
                other => return other,
            }
            if spins > 0 {
                spins -= 1;
                core::hint::spin_loop();
                continue;
            }
            let h = self.h();
            if peer_gone(self.closed_bits(), CONSUMER_CLOSED, &h.consumer, slice_over) {
                return Err(PushError {
                    kind: RingError::Disconnected,
                    value,
                });
            }
            let seen = self.cached_head;
            let cap = self.at.capacity;
            let tail = self.tail;
            // Acquire: as in `free_fresh`.
            let room = || tail.wrapping_sub(h.head.load(Acquire)) < cap;
            match sleep_on(&h.head, seen, &h.producer_sleeping, deadline, room) {
                Slept::DeadlinePassed => {
                    return Err(PushError {
                        kind: RingError::Full,
                        value,
                    });
                }
                slept => slice_over = slept == Slept::SliceOver,
            }
        }
    }

    /// Pushes as many of `items` as fit, in one publication; returns how many.
    ///
    /// # Errors
    ///
    /// [`RingError::Disconnected`], [`RingError::Corrupted`].
    pub fn push_slice(&mut self, items: &[T]) -> Result<usize, RingError> {
        self.claim();
        let want = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let n = self.free_fresh(want)?.min(want);
        if n == 0 && self.closed_bits() & CONSUMER_CLOSED != 0 {
            return Err(RingError::Disconnected);
        }
        let mut pos = self.tail;
        for item in items.iter().take(n as usize) {
            // SAFETY: positions tail..tail+n are free (n <= free) and in the
            // ring (masked); atomic-word copy as in `try_push`.
            unsafe { store_slot(self.slot(pos).as_ptr(), *item) };
            pos = pos.wrapping_add(1);
        }
        if n > 0 {
            self.publish(n);
        }
        Ok(n as usize)
    }

    /// Lends the next free slot to be written in place (the zero-copy path);
    /// nothing is visible to the consumer until [`WriteSlot::commit`].
    /// `None` when the ring is full.
    ///
    /// The loan is a `&mut T` into shared memory, sound because no reader
    /// looks at the slot until commit; see [`WriteSlot`] for what that trusts.
    pub fn reserve(&mut self) -> Option<WriteSlot<'_, T>> {
        self.claim();
        if self.free_fresh(1).ok()? == 0 {
            return None;
        }
        let slot = self.slot(self.tail);
        Some(WriteSlot { producer: self, slot })
    }

    /// Marks this end closed: the consumer drains what is left, then gets
    /// [`RingError::Disconnected`].
    pub fn close(&mut self) {
        let h = self.h();
        // Release: everything pushed before is visible with the close.
        h.closed.fetch_or(PRODUCER_CLOSED, Release);
        sync::futex_wake(&h.tail, 1);
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.at.capacity as usize
    }

    /// Records this process as the producer now, not at the first push
    /// (for `duplex`, whose messages may all bypass the ring).
    pub(crate) fn claim_now(&mut self) {
        self.claim();
    }

    /// Whether the consumer took everything, as last seen (a stale view
    /// may say no when the answer is yes, never the other way).
    #[inline]
    pub(crate) fn drained(&self) -> bool {
        self.tail == self.cached_head
    }

    /// Re-reads the consumer's index.
    pub(crate) fn refresh_head(&mut self) {
        // Acquire: as in `free_fresh`.
        self.cached_head = self.h().head.load(Acquire);
    }

    /// Our position: the number of messages pushed so far (wrapping).
    #[inline]
    pub(crate) fn tail(&self) -> u32 {
        self.tail
    }
}

impl<T: ShmSafe> Consumer<T> {
    cached_ring!();

    fn new(ring: Arc<Ring<T>>) -> Self {
        Self {
            at: At::of(&ring),
            ring,
            head: 0,
            cached_tail: 0,
            claimed: 0,
        }
    }

    #[inline]
    fn claim(&mut self) {
        let me = sync::cached_pid();
        if self.claimed != me {
            claim(&self.h().consumer);
            // Relaxed: our own index.
            self.head = self.h().head.load(Relaxed);
            // Acquire: as in `available_fresh`.
            self.cached_tail = self.h().tail.load(Acquire);
            self.claimed = me;
        }
    }

    fn available(&mut self) -> Result<u32, RingError> {
        let n = self.cached_tail.wrapping_sub(self.head);
        if n > self.at.capacity {
            return Err(RingError::Corrupted("tail ahead of head by more than the capacity"));
        }
        Ok(n)
    }

    /// Elements ready, re-reading the producer's index if the cache holds
    /// fewer than `want`.
    #[inline]
    fn available_fresh(&mut self, want: u32) -> Result<u32, RingError> {
        let n = self.available()?;
        if n >= want {
            return Ok(n);
        }
        // Acquire: pairs with the producer's Release store of `tail`.
        self.cached_tail = self.h().tail.load(Acquire);
        self.available()
    }

    #[inline]
    fn release(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        let h = self.h();
        // Release: pairs with the producer's Acquire load of `head`.
        h.head.store(self.head, Release);
        wake_if_sleeping(&h.head, &h.producer_sleeping);
    }

    /// Pops without waiting.
    ///
    /// # Errors
    ///
    /// [`RingError::Empty`], [`RingError::Disconnected`] once the producer
    /// closed and everything was read, [`RingError::Corrupted`].
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, RingError> {
        self.claim();
        if self.available_fresh(1)? == 0 {
            return Err(
                if self.closed_bits() & PRODUCER_CLOSED != 0 && self.available_fresh(1)? == 0 {
                    RingError::Disconnected
                } else {
                    RingError::Empty
                },
            );
        }
        // SAFETY: the slot at `head` is inside the ring (masked) and was
        // published by the producer (head < tail), ours until `head` is
        // released; the copy goes through atomic words (`copy`), so a peer
        // writing it anyway tears the value, never races; T accepts any bits.
        let value = unsafe { load_slot(self.slot(self.head).as_ptr()) };
        self.release(1);
        Ok(value)
    }

    /// Pops, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`RingError::Disconnected`] when the producer closed or died and
    /// everything it published was read.
    pub fn pop(&mut self) -> Result<T, RingError> {
        self.pop_until(None)
    }

    /// Pops, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RingError::Empty`] on timeout, [`RingError::Disconnected`].
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, RingError> {
        self.pop_until(Some(Deadline::after(timeout)))
    }

    fn pop_until(&mut self, deadline: Option<Deadline>) -> Result<T, RingError> {
        receive(self, deadline)
    }

    /// Pops up to `out.len()` elements in one release; returns how many.
    ///
    /// # Errors
    ///
    /// [`RingError::Corrupted`].
    pub fn pop_into(&mut self, out: &mut [T]) -> Result<usize, RingError> {
        self.claim();
        let n = self
            .available_fresh(u32::try_from(out.len()).unwrap_or(u32::MAX))?
            .min(u32::try_from(out.len()).unwrap_or(u32::MAX));
        let mut pos = self.head;
        for slot in out.iter_mut().take(n as usize) {
            // SAFETY: positions head..head+n are published, ours and in the
            // ring (masked); atomic-word copy as in `try_pop`.
            *slot = unsafe { load_slot(self.slot(pos).as_ptr()) };
            pos = pos.wrapping_add(1);
        }
        if n > 0 {
            self.release(n);
        }
        Ok(n as usize)
    }

    /// Lends the next element to be read in place (the zero-copy path); the
    /// slot goes back to the producer when the [`ReadSlot`] is dropped.
    /// `None` when the ring is empty.
    ///
    /// The `&T` is sound only while the producer keeps the protocol (see
    /// [`ReadSlot`]); [`Consumer::try_pop`] is the defensive, copying path.
    pub fn peek(&mut self) -> Option<ReadSlot<'_, T>> {
        self.claim();
        if self.available_fresh(1).ok()? == 0 {
            return None;
        }
        let slot = self.slot(self.head);
        Some(ReadSlot { consumer: self, slot })
    }

    /// Elements ready to read now.
    pub fn len(&mut self) -> usize {
        self.available_fresh(u32::MAX).unwrap_or(0) as usize
    }

    /// Whether nothing is ready to read now.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Marks this end closed: a blocked or later push fails with
    /// [`RingError::Disconnected`].
    pub fn close(&mut self) {
        let h = self.h();
        // Release: pairs with the producer's Acquire load in `closed`.
        h.closed.fetch_or(CONSUMER_CLOSED, Release);
        sync::futex_wake(&h.head, 1);
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.at.capacity as usize
    }

    /// Records this process as the consumer now (see
    /// [`Producer::claim_now`]).
    pub(crate) fn claim_now(&mut self) {
        self.claim();
    }

    /// Our position: the number of messages popped so far (wrapping).
    #[inline]
    pub(crate) fn head(&self) -> u32 {
        self.head
    }

    /// Messages ready, re-reading the producer's index if the cache has
    /// none.
    #[inline]
    pub(crate) fn ready(&mut self) -> Result<u32, RingError> {
        self.available_fresh(1)
    }

    /// Whether the producer published past our position (a fresh read).
    pub(crate) fn published(&self) -> bool {
        // Acquire: pairs with the producer's Release store of `tail`.
        self.h().tail.load(Acquire) != self.head
    }

    /// Whether the producer closed its end or (when `check_alive`) died.
    pub(crate) fn producer_gone(&self, check_alive: bool) -> bool {
        peer_gone(self.closed_bits(), PRODUCER_CLOSED, &self.h().producer, check_alive)
    }
}

impl<T: ShmSafe> Receive for Consumer<T> {
    type Item = T;

    fn attempt(&mut self) -> Result<T, RingError> {
        self.try_pop()
    }

    fn sender_gone(&self, check_alive: bool) -> bool {
        self.producer_gone(check_alive)
    }

    fn sleep(&self, deadline: Option<Deadline>) -> Slept {
        let h = self.h();
        let head = self.head;
        // Acquire: as in `available_fresh`.
        let data = || h.tail.load(Acquire) != head;
        sleep_on(&h.tail, self.cached_tail, &h.consumer_sleeping, deadline, data)
    }
}

/// A free slot lent by [`Producer::reserve`]; write it through `DerefMut`,
/// then [`WriteSlot::commit`]. Dropped without commit, nothing is published.
///
/// The `&T`/`&mut T` it hands out points into shared memory: no reader
/// looks at the slot until commit (the consumer reads only below the
/// published `tail`), so the reference is sound while the consumer keeps the
/// protocol. A consumer that scribbles on a slot it does not own breaks
/// that; [`Producer::try_push`] (a copy through atomic words) is the path
/// that stays sound under any peer.
pub struct WriteSlot<'a, T: ShmSafe> {
    producer: &'a mut Producer<T>,
    slot: NonNull<T>,
}

impl<T: ShmSafe> WriteSlot<'_, T> {
    /// Publishes the slot to the consumer.
    pub fn commit(self) {
        self.producer.publish(1);
    }
}

impl<T: ShmSafe> Deref for WriteSlot<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot is free and lent to us alone until commit (the
        // consumer does not look past `tail`); T accepts any bit pattern, so
        // whatever an earlier message left there is a valid T.
        unsafe { self.slot.as_ref() }
    }
}

impl<T: ShmSafe> DerefMut for WriteSlot<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { self.slot.as_mut() }
    }
}

impl<T: ShmSafe> fmt::Debug for WriteSlot<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteSlot")
    }
}

/// A published element lent by [`Consumer::peek`]; read it through `Deref`.
/// The slot returns to the producer when this is dropped.
///
/// This is a zero-copy read loan: the `&T` points into shared memory and is
/// sound only while the producer keeps the protocol (it does not write a
/// published slot before the consumer releases it). A buggy or hostile
/// producer that writes it anyway makes the reference a data race; against
/// such a peer use [`Consumer::try_pop`], which copies through atomic words
/// and is sound under any peer (crate `shm`'s trust model).
pub struct ReadSlot<'a, T: ShmSafe> {
    consumer: &'a mut Consumer<T>,
    slot: NonNull<T>,
}

impl<T: ShmSafe> Deref for ReadSlot<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot was published (Acquire) and the producer does not
        // reuse it until `head` moves past it, which happens on drop.
        unsafe { self.slot.as_ref() }
    }
}

impl<T: ShmSafe> Drop for ReadSlot<'_, T> {
    fn drop(&mut self) {
        self.consumer.release(1);
    }
}

impl<T: ShmSafe> fmt::Debug for ReadSlot<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadSlot")
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
        let ring = Ring::attach(Segment::deserialize(deserializer)?).map_err(shm_core::handle::decode_error)?;
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
        let ring = Ring::attach(Segment::deserialize(deserializer)?).map_err(shm_core::handle::decode_error)?;
        sync::membarrier_register();
        Ok(Self::new(Arc::new(ring)))
    }
}

// Segments and real threads: not under loom (see `loom_tests.rs`).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_empty_and_batches() {
        let (mut tx, mut rx) = channel::<u32>(3).expect("create");
        assert_eq!(tx.capacity(), 4, "rounded up to a power of two");
        for i in 0..4 {
            tx.try_push(i).expect("room");
        }
        let err = tx.try_push(9).expect_err("full");
        assert_eq!((err.kind, err.value), (RingError::Full, 9));
        assert_eq!(rx.len(), 4);
        assert_eq!(rx.try_pop(), Ok(0));
        assert_eq!(tx.push_slice(&[10, 11, 12]), Ok(1));
        let mut out = [0u32; 8];
        assert_eq!(rx.pop_into(&mut out), Ok(4));
        assert_eq!(out[..4], [1, 2, 3, 10]);
        assert_eq!(rx.try_pop(), Err(RingError::Empty));
        // Wrap around many times.
        for i in 0..1000u32 {
            tx.try_push(i).expect("room");
            assert_eq!(rx.try_pop(), Ok(i));
        }
    }

    #[test]
    fn loans_write_and_read_in_place() {
        let (mut tx, mut rx) = channel::<[u64; 4]>(2).expect("create");
        {
            let mut slot = tx.reserve().expect("room");
            slot[0] = 1;
            slot[3] = 4;
            slot[1] = 0;
            slot[2] = 0;
            slot.commit();
        }
        // Reserved but never committed: nothing is published.
        assert!(tx.reserve().is_some());
        {
            let msg = rx.peek().expect("one message");
            assert_eq!(*msg, [1, 0, 0, 4]);
        }
        assert!(rx.peek().is_none());
    }

    #[test]
    fn close_lets_the_consumer_drain_then_disconnects() {
        let (mut tx, mut rx) = channel::<u8>(4).expect("create");
        tx.try_push(1).expect("room");
        tx.close();
        assert_eq!(rx.pop(), Ok(1));
        assert_eq!(rx.pop(), Err(RingError::Disconnected));
        let (mut tx, mut rx) = channel::<u8>(1).expect("create");
        tx.try_push(1).expect("room");
        rx.close();
        assert_eq!(tx.push(2).map_err(|e| e.kind), Err(RingError::Disconnected));
    }

    #[test]
    fn blocking_between_threads_and_timeouts() {
        let (mut tx, mut rx) = channel::<u64>(8).expect("create");
        assert_eq!(rx.pop_timeout(Duration::from_millis(5)), Err(RingError::Empty));
        let n = if cfg!(miri) { 500 } else { 100_000u64 };
        let t = std::thread::spawn(move || {
            for i in 0..n {
                tx.push(i).expect("consumer alive");
            }
            tx.close();
        });
        let mut expect = 0;
        loop {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                Err(RingError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(expect, n);
        t.join().expect("thread");
    }

    #[test]
    fn scribbled_indices_are_reported_not_used() {
        let (mut tx, mut rx) = channel::<u32>(4).expect("create");
        tx.try_push(1).expect("room");
        rx.ring.header().tail.store(1_000_000, Relaxed);
        rx.cached_tail = 0;
        assert!(matches!(rx.try_pop(), Err(RingError::Corrupted(_))));
        rx.ring.header().head.store(u32::MAX / 2, Relaxed);
        tx.cached_head = 0;
        tx.tail = 100;
        assert!(matches!(
            tx.try_push(1).map_err(|e| e.kind),
            Err(RingError::Corrupted(_))
        ));
    }

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Random mixes of every push and pop form, across two threads, on a
    /// small ring (so it is full and empty often): the history must be
    /// exactly 0, 1, 2, ... with nothing lost or repeated.
    #[test]
    fn random_histories_keep_fifo_without_loss_or_duplicates() {
        const N: u64 = if cfg!(miri) { 500 } else { 200_000 };
        for seed in [1u64, 0x9e37_79b9, 0xdead_beef] {
            let (mut tx, mut rx) = channel::<u64>(8).expect("create");
            let producer = std::thread::spawn(move || {
                let (mut s, mut next) = (seed, 0u64);
                while next < N {
                    match xorshift(&mut s) % 3 {
                        0 => {
                            if tx.try_push(next).is_ok() {
                                next += 1;
                            }
                        }
                        1 => {
                            let k = (xorshift(&mut s) % 5 + 1).min(N - next);
                            let batch: Vec<u64> = (next..next + k).collect();
                            next += tx.push_slice(&batch).expect("consumer alive") as u64;
                        }
                        _ => {
                            if let Some(mut slot) = tx.reserve() {
                                *slot = next;
                                slot.commit();
                                next += 1;
                            }
                        }
                    }
                }
                tx.close();
            });
            let (mut s, mut expect) = (seed.rotate_left(17), 0u64);
            let mut buf = [0u64; 6];
            loop {
                match xorshift(&mut s) % 3 {
                    0 => match rx.try_pop() {
                        Ok(v) => {
                            assert_eq!(v, expect);
                            expect += 1;
                        }
                        Err(RingError::Empty) => {}
                        Err(RingError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    },
                    1 => {
                        let n = rx.pop_into(&mut buf).expect("valid ring");
                        for v in &buf[..n] {
                            assert_eq!(*v, expect);
                            expect += 1;
                        }
                    }
                    _ => {
                        if let Some(v) = rx.peek() {
                            assert_eq!(*v, expect);
                            expect += 1;
                        }
                    }
                }
            }
            assert_eq!(expect, N, "seed {seed}");
            producer.join().expect("producer");
        }
    }

    #[test]
    fn a_received_ring_with_a_damaged_capacity_is_refused() {
        let (tx, _rx) = channel::<u64>(8).expect("create");
        let again = || tx.ring.seg.try_clone().expect("the segment header is intact");
        assert!(Ring::<u64>::attach(again()).is_ok());
        for bad in [0u32, 3, 16, 1 << 31] {
            tx.ring.header().capacity.store(bad, Relaxed);
            assert!(
                matches!(Ring::<u64>::attach(again()), Err(SegmentError::BadPayload { .. })),
                "capacity {bad}"
            );
        }
        tx.ring.header().capacity.store(8, Relaxed);
        assert!(matches!(
            Ring::<u32>::attach(again()),
            Err(SegmentError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn zero_and_absurd_capacities_are_refused() {
        assert!(channel::<u8>(0).is_err());
        assert!(channel::<u8>(MAX_CAPACITY + 1).is_err());
        assert!(channel::<()>(4).is_err());
    }
}

#[cfg(all(test, not(loom)))]
mod scribble_tests {
    use super::*;
    use crate::test_util::{Rng, bounded, scribble};

    /// The header's index words (and the slots) scribbled, seeded: every
    /// non-blocking or timed operation returns (Ok, Empty/Full,
    /// Disconnected or Corrupted), none hangs or panics.
    #[test]
    fn random_scribbles_never_hang() {
        let rounds = if cfg!(miri) { 4 } else { 300 };
        let t = Duration::from_millis(20);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..rounds {
            let (mut tx, mut rx) = channel::<u64>(4).expect("create");
            for i in 0..rng.below(5) {
                tx.try_push(i as u64).expect("room");
            }
            let _ = rx.try_pop();
            let seg = &tx.ring.seg;
            // The two index lines and the slots (line 0 holds the owner
            // and sleep words, whose scribbles cost a liveness slice).
            let (base, len) = (seg.payload().as_ptr().wrapping_add(128), seg.payload_len() - 128);
            // SAFETY: inside the payload, 128-aligned; every access to it
            // is atomic.
            unsafe { scribble(base, len, 1 + rng.below(4), &mut rng) };
            let seed = rng.next();
            bounded(&format!("round {round}"), move || {
                let mut r = Rng(seed | 1);
                for _ in 0..8 {
                    let _ = match r.below(5) {
                        0 => rx.try_pop(),
                        1 => rx.pop_timeout(t),
                        2 => tx.try_push(9).map(|()| 0).map_err(|e| e.kind),
                        3 => tx.push_timeout(9, t).map(|()| 0).map_err(|e| e.kind),
                        _ => Ok(rx.peek().map_or(0, |v| *v)),
                    };
                }
            });
        }
    }

    /// Byte arrays (copied as 8-byte words) and odd-sized types keep every
    /// byte through the atomic-word copies.
    #[test]
    #[allow(clippy::cast_possible_truncation, reason = "test patterns")]
    fn byte_arrays_and_odd_sizes_round_trip() {
        let (mut tx, mut rx) = channel::<[u8; 100]>(4).expect("create");
        let (mut tx2, mut rx2) = channel::<[u16; 9]>(4).expect("create");
        for i in 0..10u8 {
            let v: [u8; 100] = std::array::from_fn(|j| i.wrapping_mul(31).wrapping_add(j as u8));
            tx.try_push(v).expect("room");
            assert_eq!(rx.try_pop(), Ok(v));
            let w: [u16; 9] = std::array::from_fn(|j| u16::from(i) * 1000 + j as u16);
            tx2.try_push(w).expect("room");
            assert_eq!(rx2.try_pop(), Ok(w));
        }
    }

    /// Indices further apart than the ring are reported, not used.
    #[test]
    fn indices_apart_by_more_than_the_ring_are_corrupted() {
        let (mut tx, mut rx) = channel::<u64>(4).expect("create");
        tx.try_push(1).expect("room");
        tx.h().tail.store(100, Relaxed);
        assert!(matches!(rx.try_pop(), Err(RingError::Corrupted(_))));
        rx.h().head.store(200, Relaxed);
        // The producer trusts its cached head until the ring looks full.
        let r = bounded("push", move || {
            (0..5)
                .map(|_| tx.push_timeout(1, Duration::from_millis(20)).map_err(|e| e.kind))
                .find(Result::is_err)
        });
        assert!(matches!(r, Some(Err(RingError::Corrupted(_)))), "{r:?}");
    }
}
