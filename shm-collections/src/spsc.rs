//! A bounded single-producer single-consumer ring of plain data in shared
//! memory: wait-free `try_send`/`try_recv`, batches (`try_send_slice`,
//! `try_recv_slice`), loans (`reserve`: write a slot in place, then commit;
//! `peek`: read a slot in place, then release), and blocking `send`/`recv`
//! and timed `send_timeout`/`recv_timeout`, with `shm_core`'s error family.
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
//! its end or died, a blocked `send` hands the value back and a blocked
//! `recv` drains what is left and then reports the disconnection. A message
//! is published only after it is completely written, so a producer killed
//! mid-write never publishes half a message. Indices read from shared memory
//! are checked: a distance larger than the capacity means a peer scribbled
//! on the header, and is reported as [`Fault::Corrupted`], never used.
//!
//! The copying paths (`try_send`, `try_send_slice`, `try_recv`, `try_recv_slice` and
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
use shm_core::{
    Fault, RecvError, RecvTimeoutError, Segment, SegmentError, SegmentKind, SendError, SendTimeoutError, ShmSafe,
    TryRecvError, TrySendError, TypeIdentity,
};

pub(crate) use crate::ring::RingError;
use crate::ring::{Stop, full_or_stop};
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
    /// Whether the sender closed its end or (when `check_alive`) died.
    fn sender_gone(&self, check_alive: bool) -> bool;
    /// Sleeps until something may have come, one liveness slice at most.
    fn sleep(&self, deadline: Option<Deadline>) -> Slept;
}

/// The blocking receive: spin a while, then sleep in liveness slices; a
/// sender that closed or died ends the wait once what it sent is received.
/// `attempt` is one try that does not wait.
pub(crate) fn receive<E: Receive, R>(
    end: &mut E,
    deadline: Option<Deadline>,
    mut attempt: impl FnMut(&mut E) -> Result<R, TryRecvError>,
) -> Result<R, Stop> {
    let mut spins = shm_sync::park::spins();
    let mut slice_over = false;
    loop {
        match attempt(end) {
            Err(TryRecvError::Empty) => {}
            other => return other.map_err(recv_stop),
        }
        if spins > 0 {
            spins -= 1;
            core::hint::spin_loop();
            continue;
        }
        if end.sender_gone(slice_over) {
            // Whatever it sent before dying is still delivered.
            return match attempt(end) {
                Err(TryRecvError::Empty) => Err(Stop::Disconnected),
                other => other.map_err(recv_stop),
            };
        }
        match end.sleep(deadline) {
            Slept::DeadlinePassed => return Err(Stop::Timeout),
            slept => slice_over = slept == Slept::SliceOver,
        }
    }
}

/// A failed non-blocking receive that is not `Empty`, as a stop.
fn recv_stop(e: TryRecvError) -> Stop {
    match e {
        TryRecvError::Fault(f) => Stop::Fault(f),
        _ => Stop::Disconnected,
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
/// tx.try_send(7).expect("room");
/// assert_eq!(rx.try_recv(), Ok(7));
/// assert_eq!(rx.try_recv(), Err(shm_core::TryRecvError::Empty));
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

/// A distance between the two indices larger than the ring: a peer wrote
/// over the header.
#[cold]
fn corrupted_distance(what: &'static str, capacity: u32, found: u32) -> Fault {
    Fault::corrupted(
        "spsc ring",
        what,
        format_args!("at most the capacity, {capacity}"),
        found,
    )
}

/// A send error without a value, with `value` put in.
fn with_value<T>(e: TrySendError<()>, value: T) -> TrySendError<T> {
    match e {
        TrySendError::Full(()) => TrySendError::Full(value),
        TrySendError::Fault((), f) => TrySendError::Fault(value, f),
        _ => TrySendError::Disconnected(value),
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
    fn free(&mut self) -> Result<u32, Fault> {
        let used = self.tail.wrapping_sub(self.cached_head);
        if used > self.at.capacity {
            return Err(corrupted_distance("tail - head", self.at.capacity, used));
        }
        Ok(self.at.capacity - used)
    }

    /// Free slots, re-reading the consumer's index if the cache says none.
    #[inline]
    fn free_fresh(&mut self, want: u32) -> Result<u32, Fault> {
        let free = self.free()?;
        if free >= want {
            return Ok(free);
        }
        // Acquire: pairs with the Release store of `head` in the consumer;
        // the slots it handed back are ours to overwrite.
        self.cached_head = self.h().head.load(Acquire);
        self.free()
    }

    /// Whether a slot is free now: `Full` or `Disconnected` (when the
    /// consumer closed) when not.
    #[inline]
    fn room(&mut self) -> Result<(), TrySendError<()>> {
        self.claim();
        match self.free_fresh(1) {
            Ok(0) if self.closed_bits() & CONSUMER_CLOSED != 0 => Err(TrySendError::Disconnected(())),
            Ok(0) => Err(TrySendError::Full(())),
            Ok(_) => Ok(()),
            Err(f) => Err(TrySendError::Fault((), f)),
        }
    }

    #[inline]
    fn publish(&mut self, n: u32) {
        self.tail = self.tail.wrapping_add(n);
        let h = self.h();
        // Release: pairs with the consumer's Acquire load of `tail`.
        h.tail.store(self.tail, Release);
        wake_if_sleeping(&h.tail, &h.consumer_sleeping);
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (value handed back),
    /// [`TrySendError::Disconnected`] once the consumer closed,
    /// [`TrySendError::Fault`] ([`Fault::Corrupted`]) for impossible indices.
    #[inline]
    pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
        if let Err(e) = self.room() {
            return Err(with_value(e, value));
        }
        // SAFETY: the slot at `tail` is inside the ring (masked) and free
        // (`room`): the consumer does not read it until `tail` is
        // published below; a scribbling peer's racing accesses are atomic
        // too (`copy`), so they tear the value, never race.
        unsafe { store_slot(self.slot(self.tail).as_ptr(), value) };
        self.publish(1);
        Ok(())
    }

    /// Sends, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the consumer closed or died,
    /// [`SendError::Fault`]; the value is handed back.
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        match self.try_send(value) {
            Ok(()) => Ok(()),
            Err(e) => {
                let value = full_or_stop(e).map_err(|(v, stop)| stop.send(v))?;
                self.send_until(value, None).map_err(|(v, stop)| stop.send(v))
            }
        }
    }

    /// Sends, waiting for room up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with `timeout`),
    /// [`SendTimeoutError::Disconnected`], [`SendTimeoutError::Fault`]; the
    /// value is handed back.
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(value, Some(Deadline::after(timeout)))
            .map_err(|(v, stop)| stop.send_timeout(v, timeout))
    }

    fn send_until(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), (T, Stop)> {
        self.wait_room(deadline).map_err(|stop| (value, stop))?;
        match self.try_send(value) {
            Ok(()) => Ok(()),
            // Only this end fills the ring: room seen stays room.
            Err(e) => Err(full_or_stop(e).map_or_else(|stop| stop, |v| (v, Stop::Disconnected))),
        }
    }

    /// Waits until a slot is free: spin a while, then sleep in liveness
    /// slices; a consumer that closed or died ends the wait.
    fn wait_room(&mut self, deadline: Option<Deadline>) -> Result<(), Stop> {
        let mut spins = shm_sync::park::spins();
        let mut slice_over = false;
        loop {
            match self.room() {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(())) => {}
                Err(e) => return Err(full_or_stop(e).map_or_else(|((), stop)| stop, |()| Stop::Disconnected)),
            }
            if spins > 0 {
                spins -= 1;
                core::hint::spin_loop();
                continue;
            }
            let h = self.h();
            if peer_gone(self.closed_bits(), CONSUMER_CLOSED, &h.consumer, slice_over) {
                return Err(Stop::Disconnected);
            }
            let seen = self.cached_head;
            let cap = self.at.capacity;
            let tail = self.tail;
            // Acquire: as in `free_fresh`.
            let room = || tail.wrapping_sub(h.head.load(Acquire)) < cap;
            match sleep_on(&h.head, seen, &h.producer_sleeping, deadline, room) {
                Slept::DeadlinePassed => return Err(Stop::Timeout),
                slept => slice_over = slept == Slept::SliceOver,
            }
        }
    }

    /// Sends as many of `items` as fit, in one publication; returns how
    /// many (at least one).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when none fit (or `items` is empty),
    /// [`TrySendError::Disconnected`] once the consumer closed,
    /// [`TrySendError::Fault`].
    pub fn try_send_slice(&mut self, items: &[T]) -> Result<usize, TrySendError<()>> {
        self.claim();
        let want = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let n = self.free_fresh(want).map_err(|f| TrySendError::Fault((), f))?.min(want);
        if n == 0 {
            return Err(if self.closed_bits() & CONSUMER_CLOSED != 0 {
                TrySendError::Disconnected(())
            } else {
                TrySendError::Full(())
            });
        }
        let mut pos = self.tail;
        for item in items.iter().take(n as usize) {
            // SAFETY: positions tail..tail+n are free (n <= free) and in the
            // ring (masked); atomic-word copy as in `try_send`.
            unsafe { store_slot(self.slot(pos).as_ptr(), *item) };
            pos = pos.wrapping_add(1);
        }
        self.publish(n);
        Ok(n as usize)
    }

    /// Lends the next free slot to be written in place (the zero-copy path);
    /// nothing is visible to the consumer until [`SendLoan::commit`].
    ///
    /// The loan is a `&mut T` into shared memory, sound because no reader
    /// looks at the slot until commit; see [`SendLoan`] for what that trusts.
    ///
    /// # Errors
    ///
    /// As [`Producer::try_send`].
    pub fn try_reserve(&mut self) -> Result<SendLoan<'_, T>, TrySendError<()>> {
        self.room()?;
        Ok(self.loan())
    }

    /// Lends the next free slot, waiting for one as long as needed.
    ///
    /// # Errors
    ///
    /// As [`Producer::send`].
    pub fn reserve(&mut self) -> Result<SendLoan<'_, T>, SendError<()>> {
        self.wait_room(None).map_err(|stop| stop.send(()))?;
        Ok(self.loan())
    }

    /// Lends the next free slot, waiting for one up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_timeout`].
    pub fn reserve_timeout(&mut self, timeout: Duration) -> Result<SendLoan<'_, T>, SendTimeoutError<()>> {
        self.wait_room(Some(Deadline::after(timeout)))
            .map_err(|stop| stop.send_timeout((), timeout))?;
        Ok(self.loan())
    }

    /// The loan of the slot at `tail`, known free.
    fn loan(&mut self) -> SendLoan<'_, T> {
        let slot = self.slot(self.tail);
        SendLoan { producer: self, slot }
    }

    /// Marks this end closed: the consumer drains what is left, then gets
    /// [`RecvError::Disconnected`].
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

    fn available(&mut self) -> Result<u32, Fault> {
        let n = self.cached_tail.wrapping_sub(self.head);
        if n > self.at.capacity {
            return Err(corrupted_distance("tail - head", self.at.capacity, n));
        }
        Ok(n)
    }

    /// Elements ready, re-reading the producer's index if the cache holds
    /// fewer than `want`.
    #[inline]
    fn available_fresh(&mut self, want: u32) -> Result<u32, Fault> {
        let n = self.available()?;
        if n >= want {
            return Ok(n);
        }
        // Acquire: pairs with the producer's Release store of `tail`.
        self.cached_tail = self.h().tail.load(Acquire);
        self.available()
    }

    /// At least `want` (>= 1) elements ready, or why not: `Empty`, or
    /// `Disconnected` once the producer closed and nothing is left.
    #[inline]
    fn ready_at_least(&mut self, want: u32) -> Result<u32, TryRecvError> {
        self.claim();
        let n = self.available_fresh(want).map_err(TryRecvError::Fault)?;
        if n > 0 {
            return Ok(n);
        }
        let closed = self.closed_bits() & PRODUCER_CLOSED != 0;
        // A close is seen after everything sent before it: look once more.
        if closed && self.available_fresh(1).map_err(TryRecvError::Fault)? == 0 {
            Err(TryRecvError::Disconnected)
        } else if closed {
            self.available_fresh(want).map_err(TryRecvError::Fault)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    #[inline]
    fn release(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        let h = self.h();
        // Release: pairs with the producer's Acquire load of `head`.
        h.head.store(self.head, Release);
        wake_if_sleeping(&h.head, &h.producer_sleeping);
    }

    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], [`TryRecvError::Disconnected`] once the
    /// producer closed and everything was read, [`TryRecvError::Fault`]
    /// ([`Fault::Corrupted`]) for impossible indices.
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.ready_at_least(1)?;
        // SAFETY: the slot at `head` is inside the ring (masked) and was
        // published by the producer (head < tail), ours until `head` is
        // released; the copy goes through atomic words (`copy`), so a peer
        // writing it anyway tears the value, never races; T accepts any bits.
        let value = unsafe { load_slot(self.slot(self.head).as_ptr()) };
        self.release(1);
        Ok(value)
    }

    /// Receives, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] when the producer closed or died and
    /// everything it published was read, [`RecvError::Fault`].
    pub fn recv(&mut self) -> Result<T, RecvError> {
        receive(self, None, Self::try_recv).map_err(Stop::recv)
    }

    /// Receives, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] (with `timeout`),
    /// [`RecvTimeoutError::Disconnected`], [`RecvTimeoutError::Fault`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        receive(self, Some(Deadline::after(timeout)), Self::try_recv).map_err(|stop| stop.recv_timeout(timeout))
    }

    /// Receives up to `out.len()` elements in one release; returns how many
    /// (at least one).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when none is ready (or `out` is empty),
    /// [`TryRecvError::Disconnected`], [`TryRecvError::Fault`].
    pub fn try_recv_slice(&mut self, out: &mut [T]) -> Result<usize, TryRecvError> {
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if want == 0 {
            return Err(TryRecvError::Empty);
        }
        let n = self.ready_at_least(want)?.min(want);
        let mut pos = self.head;
        for slot in out.iter_mut().take(n as usize) {
            // SAFETY: positions head..head+n are published, ours and in the
            // ring (masked); atomic-word copy as in `try_recv`.
            *slot = unsafe { load_slot(self.slot(pos).as_ptr()) };
            pos = pos.wrapping_add(1);
        }
        self.release(n);
        Ok(n as usize)
    }

    /// Lends the next element to be read in place (the zero-copy path); the
    /// slot goes back to the producer when the [`RecvLoan`] is dropped.
    ///
    /// The `&T` is sound only while the producer keeps the protocol (see
    /// [`RecvLoan`]); [`Consumer::try_recv`] is the defensive, copying path.
    ///
    /// # Errors
    ///
    /// As [`Consumer::try_recv`].
    pub fn try_peek(&mut self) -> Result<RecvLoan<'_, T>, TryRecvError> {
        self.ready_at_least(1)?;
        Ok(self.loan())
    }

    /// Lends the next element, waiting for one as long as needed.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv`].
    pub fn peek(&mut self) -> Result<RecvLoan<'_, T>, RecvError> {
        receive(self, None, |c| c.ready_at_least(1)).map_err(Stop::recv)?;
        Ok(self.loan())
    }

    /// Lends the next element, waiting for one up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_timeout`].
    pub fn peek_timeout(&mut self, timeout: Duration) -> Result<RecvLoan<'_, T>, RecvTimeoutError> {
        receive(self, Some(Deadline::after(timeout)), |c| c.ready_at_least(1))
            .map_err(|stop| stop.recv_timeout(timeout))?;
        Ok(self.loan())
    }

    /// The loan of the slot at `head`, known published.
    fn loan(&mut self) -> RecvLoan<'_, T> {
        let slot = self.slot(self.head);
        RecvLoan { consumer: self, slot }
    }

    /// Elements ready to read now.
    pub fn len(&mut self) -> usize {
        self.available_fresh(u32::MAX).unwrap_or(0) as usize
    }

    /// Whether nothing is ready to read now.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Marks this end closed: a blocked or later send fails with
    /// [`SendError::Disconnected`].
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
    pub(crate) fn ready(&mut self) -> Result<u32, Fault> {
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
/// then [`SendLoan::commit`]. Dropped without commit, nothing is published.
///
/// The `&T`/`&mut T` it hands out points into shared memory: no reader
/// looks at the slot until commit (the consumer reads only below the
/// published `tail`), so the reference is sound while the consumer keeps the
/// protocol. A consumer that scribbles on a slot it does not own breaks
/// that; [`Producer::try_send`] (a copy through atomic words) is the path
/// that stays sound under any peer.
pub struct SendLoan<'a, T: ShmSafe> {
    producer: &'a mut Producer<T>,
    slot: NonNull<T>,
}

impl<T: ShmSafe> SendLoan<'_, T> {
    /// Publishes the slot to the consumer.
    pub fn commit(self) {
        self.producer.publish(1);
    }
}

impl<T: ShmSafe> Deref for SendLoan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot is free and lent to us alone until commit (the
        // consumer does not look past `tail`); T accepts any bit pattern, so
        // whatever an earlier message left there is a valid T.
        unsafe { self.slot.as_ref() }
    }
}

impl<T: ShmSafe> DerefMut for SendLoan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { self.slot.as_mut() }
    }
}

impl<T: ShmSafe> fmt::Debug for SendLoan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendLoan")
    }
}

/// A published element lent by [`Consumer::peek`]; read it through `Deref`.
/// The slot returns to the producer when this is dropped.
///
/// This is a zero-copy read loan: the `&T` points into shared memory and is
/// sound only while the producer keeps the protocol (it does not write a
/// published slot before the consumer releases it). A buggy or hostile
/// producer that writes it anyway makes the reference a data race; against
/// such a peer use [`Consumer::try_recv`], which copies through atomic words
/// and is sound under any peer (crate `shm`'s trust model).
pub struct RecvLoan<'a, T: ShmSafe> {
    consumer: &'a mut Consumer<T>,
    slot: NonNull<T>,
}

impl<T: ShmSafe> Deref for RecvLoan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot was published (Acquire) and the producer does not
        // reuse it until `head` moves past it, which happens on drop.
        unsafe { self.slot.as_ref() }
    }
}

impl<T: ShmSafe> Drop for RecvLoan<'_, T> {
    fn drop(&mut self) {
        self.consumer.release(1);
    }
}

impl<T: ShmSafe> fmt::Debug for RecvLoan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecvLoan")
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
            tx.try_send(i).expect("room");
        }
        let err = tx.try_send(9).expect_err("full");
        assert!(matches!(err, TrySendError::Full(9)), "{err:?}");
        assert_eq!(rx.len(), 4);
        assert_eq!(rx.try_recv(), Ok(0));
        assert_eq!(tx.try_send_slice(&[10, 11, 12]).ok(), Some(1));
        assert!(matches!(tx.try_send_slice(&[13]), Err(TrySendError::Full(()))));
        let mut out = [0u32; 8];
        assert_eq!(rx.try_recv_slice(&mut out), Ok(4));
        assert_eq!(out[..4], [1, 2, 3, 10]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.try_recv_slice(&mut out), Err(TryRecvError::Empty));
        // Wrap around many times.
        for i in 0..1000u32 {
            tx.try_send(i).expect("room");
            assert_eq!(rx.try_recv(), Ok(i));
        }
    }

    #[test]
    fn loans_write_and_read_in_place() {
        let (mut tx, mut rx) = channel::<[u64; 4]>(2).expect("create");
        {
            let mut slot = tx.try_reserve().expect("room");
            slot[0] = 1;
            slot[3] = 4;
            slot[1] = 0;
            slot[2] = 0;
            slot.commit();
        }
        // Reserved but never committed: nothing is published.
        assert!(tx.try_reserve().is_ok());
        {
            let msg = rx.try_peek().expect("one message");
            assert_eq!(*msg, [1, 0, 0, 4]);
        }
        assert!(matches!(rx.try_peek(), Err(TryRecvError::Empty)));
        // The blocking and timed loans.
        tx.reserve().expect("room").commit();
        assert_eq!(*rx.peek().expect("one message"), [0, 0, 0, 0]);
        let t = Duration::from_millis(5);
        assert_eq!(rx.peek_timeout(t).map(|_| ()), Err(RecvTimeoutError::Timeout(t)));
        tx.reserve_timeout(t).expect("room").commit();
        tx.reserve_timeout(t).expect("room").commit();
        assert!(matches!(tx.reserve_timeout(t), Err(SendTimeoutError::Timeout((), d)) if d == t));
        rx.close();
        assert!(matches!(tx.reserve(), Err(SendError::Disconnected(()))));
    }

    #[test]
    fn close_lets_the_consumer_drain_then_disconnects() {
        let (mut tx, mut rx) = channel::<u8>(4).expect("create");
        tx.try_send(1).expect("room");
        tx.close();
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert!(matches!(rx.peek(), Err(RecvError::Disconnected)));
        let (mut tx, mut rx) = channel::<u8>(1).expect("create");
        tx.try_send(1).expect("room");
        rx.close();
        assert!(matches!(tx.send(2), Err(SendError::Disconnected(2))));
        assert!(matches!(tx.try_send_slice(&[2]), Err(TrySendError::Disconnected(()))));
    }

    #[test]
    fn blocking_between_threads_and_timeouts() {
        let (mut tx, mut rx) = channel::<u64>(8).expect("create");
        let t = Duration::from_millis(5);
        assert_eq!(rx.recv_timeout(t), Err(RecvTimeoutError::Timeout(t)));
        let n = if cfg!(miri) { 500 } else { 100_000u64 };
        let t = std::thread::spawn(move || {
            for i in 0..n {
                tx.send(i).expect("consumer alive");
            }
            tx.close();
        });
        let mut expect = 0;
        loop {
            match rx.recv() {
                Ok(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(expect, n);
        t.join().expect("thread");
    }

    #[test]
    fn scribbled_indices_are_reported_not_used() {
        let (mut tx, mut rx) = channel::<u32>(4).expect("create");
        tx.try_send(1).expect("room");
        rx.ring.header().tail.store(1_000_000, Relaxed);
        rx.cached_tail = 0;
        let e = rx.try_recv().expect_err("corrupted");
        assert!(
            matches!(&e, TryRecvError::Fault(Fault::Corrupted { object: "spsc ring", found, .. }) if found == "1000000"),
            "{e:?}"
        );
        rx.ring.header().head.store(u32::MAX / 2, Relaxed);
        tx.cached_head = 0;
        tx.tail = 100;
        assert!(matches!(
            tx.try_send(1),
            Err(TrySendError::Fault(1, Fault::Corrupted { .. }))
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
                            if tx.try_send(next).is_ok() {
                                next += 1;
                            }
                        }
                        1 => {
                            let k = (xorshift(&mut s) % 5 + 1).min(N - next);
                            let batch: Vec<u64> = (next..next + k).collect();
                            match tx.try_send_slice(&batch) {
                                Ok(n) => next += n as u64,
                                Err(TrySendError::Full(())) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        _ => {
                            if let Ok(mut slot) = tx.try_reserve() {
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
                    0 => match rx.try_recv() {
                        Ok(v) => {
                            assert_eq!(v, expect);
                            expect += 1;
                        }
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    },
                    1 => {
                        let n = match rx.try_recv_slice(&mut buf) {
                            Ok(n) => n,
                            Err(TryRecvError::Empty) => 0,
                            Err(TryRecvError::Disconnected) => break,
                            Err(e) => panic!("{e}"),
                        };
                        for v in &buf[..n] {
                            assert_eq!(*v, expect);
                            expect += 1;
                        }
                    }
                    _ => {
                        if let Ok(v) = rx.try_peek() {
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
                tx.try_send(i as u64).expect("room");
            }
            let _ = rx.try_recv();
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
                        0 => rx.try_recv().map_err(|e| e.to_string()),
                        1 => rx.recv_timeout(t).map_err(|e| e.to_string()),
                        2 => tx.try_send(9).map(|()| 0).map_err(|e| e.to_string()),
                        3 => tx.send_timeout(9, t).map(|()| 0).map_err(|e| e.to_string()),
                        _ => Ok(rx.try_peek().map_or(0, |v| *v)),
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
            tx.try_send(v).expect("room");
            assert_eq!(rx.try_recv(), Ok(v));
            let w: [u16; 9] = std::array::from_fn(|j| u16::from(i) * 1000 + j as u16);
            tx2.try_send(w).expect("room");
            assert_eq!(rx2.try_recv(), Ok(w));
        }
    }

    /// Indices further apart than the ring are reported, not used.
    #[test]
    fn indices_apart_by_more_than_the_ring_are_corrupted() {
        let (mut tx, mut rx) = channel::<u64>(4).expect("create");
        tx.try_send(1).expect("room");
        tx.h().tail.store(100, Relaxed);
        assert!(matches!(
            rx.try_recv(),
            Err(TryRecvError::Fault(Fault::Corrupted { .. }))
        ));
        rx.h().head.store(200, Relaxed);
        // The producer trusts its cached head until the ring looks full.
        let r = bounded("push", move || {
            (0..5)
                .map(|_| {
                    tx.send_timeout(1, Duration::from_millis(20))
                        .map_err(|e| e.fault().cloned())
                })
                .find(Result::is_err)
        });
        assert!(matches!(r, Some(Err(Some(Fault::Corrupted { .. })))), "{r:?}");
    }
}
