//! The hub: the shared segment through which processes call the manager
//! process. It holds [`SLOTS`] mailboxes; a caller claims a free one, writes
//! its request, sets the slot's bit in the `pending` word and waits; the
//! manager process takes the pending bits, answers each slot and wakes its
//! caller.
//!
//! | offset | what                                                           |
//! |--------|----------------------------------------------------------------|
//! | 0      | magic `SHMHUB01`                                               |
//! | 8      | the manager process's owner id (pid and start tag; 0 = not yet)|
//! | 12     | shutdown: 1 when the manager asks the process to end           |
//! | 16     | `pending`: bit `i` set while slot `i` holds an unread request; |
//! |        | bit 31 asks the manager process to look at `shutdown`          |
//! | 20     | `sleeping`: 1 while the manager process sleeps on `pending`    |
//! | 64     | slot controls: 64 bytes each (state, waiting, owner, len, call)|
//! | `BUFS` | slot buffers, [`SLOT_BYTES`] each                              |
//!
//! Both sides spin briefly before they sleep (a round trip between two
//! spinning processes costs about a microsecond here; a futex wake-up costs
//! tens), and a sleeper sleeps in liveness slices, checking its peer: a
//! caller whose manager process died gets [`ManagerError::ManagerGone`]
//! within a slice, and a slot whose caller died is reclaimed by the next
//! caller that finds no free slot.
//!
//! Everything read from the hub is checked: a length past the buffer, a
//! state no side writes, a call id that is not the caller's own are
//! errors, never undefined behaviour.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::sys::{Deadline, futex_wait, futex_wake};
use shmproc_core::{Segment, SegmentKind, TypeIdentity};
use shmproc_sync::park::{owner_alive, process_owner_id};

use crate::error::ManagerError;
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The kind of segment a hub lives in.
pub(crate) const HUB_KIND: SegmentKind = SegmentKind::MANAGER_HUB;
const MAGIC: u64 = u64::from_le_bytes(*b"SHMHUB01");

/// Mailboxes: calls in flight at once (more callers wait for a free one).
pub(crate) const SLOTS: usize = 31;
/// The bit of `pending` that only asks the manager process to look at
/// `shutdown`.
pub(crate) const ATTENTION: u32 = 1 << 31;
/// Largest request or reply, in bytes.
pub(crate) const SLOT_BYTES: usize = 64 << 10;
const CONTROLS: usize = 64;
const CONTROL_LEN: usize = 64;
const BUFS: usize = 4096;
const LEN: usize = BUFS + SLOTS * SLOT_BYTES;

const _: () = assert!(CONTROLS + SLOTS * CONTROL_LEN <= BUFS);

/// Slot states.
pub(crate) const IDLE: u32 = 0;
pub(crate) const REQUEST: u32 = 1;
pub(crate) const BUSY: u32 = 2;
pub(crate) const REPLY: u32 = 3;

/// Spins before a caller or the manager process sleeps.
const SPINS: u32 = 20_000;

fn identity() -> TypeIdentity {
    TypeIdentity {
        kind: HUB_KIND,
        name: "shmproc::manager::Hub",
        size: LEN as u64,
        align: 8,
    }
}

/// A mapped hub.
pub(crate) struct Hub {
    seg: Segment,
    base: *mut u8,
}

// SAFETY: every access to the hub's bytes is atomic (words through
// `from_ptr`, buffers in words), at offsets inside the fixed-size mapping
// checked at attach; the mapping lives as long as the Hub.
unsafe impl Send for Hub {}
// SAFETY: as for Send.
unsafe impl Sync for Hub {}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("server", &self.server())
            .finish_non_exhaustive()
    }
}

/// One slot's control words.
pub(crate) struct Slot<'a> {
    pub(crate) state: &'a AtomicU32,
    pub(crate) waiting: &'a AtomicU32,
    pub(crate) owner: &'a AtomicU32,
    pub(crate) len: &'a AtomicU32,
    pub(crate) call: &'a AtomicU64,
    pub(crate) index: usize,
}

impl Hub {
    pub(crate) fn create() -> Result<Arc<Self>, ManagerError> {
        let seg = Segment::create(&identity(), LEN)?;
        let hub = Self::wrap(seg)?;
        hub.w64(0).store(MAGIC, Ordering::Release);
        Ok(Arc::new(hub))
    }

    fn wrap(seg: Segment) -> Result<Self, ManagerError> {
        seg.check_type(&identity())?;
        if seg.payload_len() != LEN {
            return Err(ManagerError::corrupted("the hub's length", seg.payload_len() as u64));
        }
        Ok(Self {
            base: seg.payload().as_ptr(),
            seg,
        })
    }

    pub(crate) fn attach(seg: Segment) -> Result<Arc<Self>, ManagerError> {
        let hub = Self::wrap(seg)?;
        let magic = hub.w64(0).load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(ManagerError::corrupted("the hub's magic", magic));
        }
        Ok(Arc::new(hub))
    }

    fn w32(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= LEN && off.is_multiple_of(4));
        // SAFETY: `off` is a constant layout offset or a slot's control
        // word (`slot` bounds the index), inside the LEN-byte payload
        // (checked at wrap).
        let ptr = unsafe { self.base.add(off) };
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "every offset used is 4-aligned in a 128-aligned payload"
        )]
        let ptr = ptr.cast::<u32>();
        // SAFETY: aligned and in bounds (above); every access to it is atomic.
        unsafe { AtomicU32::from_ptr(ptr) }
    }

    fn w64(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off + 8 <= LEN && off.is_multiple_of(8));
        // SAFETY: as in `w32`.
        let ptr = unsafe { self.base.add(off) };
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "every offset used is 8-aligned in a 128-aligned payload"
        )]
        let ptr = ptr.cast::<u64>();
        // SAFETY: as in `w32`, 8-aligned.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    pub(crate) fn server_word(&self) -> &AtomicU32 {
        self.w32(8)
    }

    /// The manager process's owner id, once it has started.
    pub(crate) fn server(&self) -> u32 {
        self.server_word().load(Ordering::Acquire)
    }

    pub(crate) fn shutdown_word(&self) -> &AtomicU32 {
        self.w32(12)
    }

    pub(crate) fn pending(&self) -> &AtomicU32 {
        self.w32(16)
    }

    pub(crate) fn sleeping(&self) -> &AtomicU32 {
        self.w32(20)
    }

    pub(crate) fn slot(&self, i: usize) -> Slot<'_> {
        let i = i % SLOTS;
        let c = CONTROLS + i * CONTROL_LEN;
        Slot {
            state: self.w32(c),
            waiting: self.w32(c + 4),
            owner: self.w32(c + 8),
            len: self.w32(c + 12),
            call: self.w64(c + 16),
            index: i,
        }
    }

    /// Writes `bytes` into slot `i`'s buffer (whole words).
    pub(crate) fn write_buf(&self, i: usize, bytes: &[u8]) -> Result<(), ManagerError> {
        if bytes.len() > SLOT_BYTES {
            return Err(ManagerError::TooLarge {
                what: "a call's arguments or reply",
                len: bytes.len() as u64,
                max: SLOT_BYTES as u64,
            });
        }
        let base = BUFS + (i % SLOTS) * SLOT_BYTES;
        for (k, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.w64(base + 8 * k).store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        self.slot(i)
            .len
            .store(u32::try_from(bytes.len()).unwrap_or(u32::MAX), Ordering::Relaxed);
        Ok(())
    }

    /// Copies slot `i`'s buffer out, its length checked.
    pub(crate) fn read_buf(&self, i: usize) -> Result<Vec<u8>, ManagerError> {
        let len = self.slot(i).len.load(Ordering::Relaxed) as usize;
        if len > SLOT_BYTES {
            return Err(ManagerError::corrupted("a hub slot's length", len as u64));
        }
        let base = BUFS + (i % SLOTS) * SLOT_BYTES;
        let mut out = Vec::with_capacity(len.div_ceil(8) * 8);
        for k in 0..len.div_ceil(8) {
            out.extend_from_slice(&self.w64(base + 8 * k).load(Ordering::Relaxed).to_le_bytes());
        }
        out.truncate(len);
        Ok(out)
    }

    /// Asks the manager process to end and wakes it.
    pub(crate) fn shut_down(&self) {
        self.shutdown_word().store(1, Ordering::SeqCst);
        self.pending().fetch_or(ATTENTION, Ordering::SeqCst);
        futex_wake(self.pending(), 1);
    }

    fn gone(&self, server: u32) -> ManagerError {
        ManagerError::ManagerGone {
            pid: shmproc_sync::park::task_of(server),
            why: if self.shutdown_word().load(Ordering::Relaxed) == 1 {
                "it was shut down".into()
            } else {
                "it died".into()
            },
        }
    }

    /// One call: claims a slot, sends `request`, waits for the reply.
    pub(crate) fn call(&self, request: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let server = self.server();
        if server == 0 || self.shutdown_word().load(Ordering::Relaxed) == 1 {
            return Err(self.gone(server));
        }
        let slot = self.claim(server)?;
        let i = slot.index;
        let release = Release(&slot);
        let id = slot.call.load(Ordering::Relaxed).wrapping_add(1);
        slot.call.store(id, Ordering::Relaxed);
        self.write_buf(i, request)?;
        // Release: the request's words are written before the state says
        // so; pairs with the manager process's Acquire load of the state.
        slot.state.store(REQUEST, Ordering::Release);
        // SeqCst, with `sleeping` below and the manager process's SeqCst
        // store of `sleeping` then load of `pending`: one of the two sees
        // the other (it does not sleep past this bit, or this wakes it).
        self.pending().fetch_or(1 << i, Ordering::SeqCst);
        if self.sleeping().load(Ordering::SeqCst) == 1 {
            futex_wake(self.pending(), 1);
        }
        self.wait_reply(&slot, server)?;
        if slot.call.load(Ordering::Relaxed) != id {
            return Err(ManagerError::corrupted(
                "a hub slot's call id",
                slot.call.load(Ordering::Relaxed),
            ));
        }
        let reply = self.read_buf(i);
        drop(release);
        reply
    }

    /// Waits for slot's reply: spins, then sleeps in liveness slices.
    fn wait_reply(&self, slot: &Slot<'_>, server: u32) -> Result<(), ManagerError> {
        for _ in 0..SPINS {
            // Acquire: pairs with the manager process's Release store of
            // REPLY; the reply's words are visible after it.
            if slot.state.load(Ordering::Acquire) == REPLY {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        loop {
            // SeqCst with the manager process's SeqCst store of REPLY then
            // load of `waiting`: it wakes this sleeper or this sees REPLY.
            slot.waiting.store(1, Ordering::SeqCst);
            let s = slot.state.load(Ordering::SeqCst);
            if s == REPLY {
                slot.waiting.store(0, Ordering::Relaxed);
                return Ok(());
            }
            if s != REQUEST && s != BUSY {
                return Err(ManagerError::corrupted("a hub slot's state", u64::from(s)));
            }
            futex_wait(slot.state, s, Some(Deadline::after(shmproc_core::LIVENESS_SLICE)));
            slot.waiting.store(0, Ordering::Relaxed);
            if slot.state.load(Ordering::Acquire) == REPLY {
                return Ok(());
            }
            if !owner_alive(server) {
                return Err(self.gone(server));
            }
        }
    }

    /// A free slot, claimed for this process; slots of dead callers are
    /// reclaimed when none is free.
    fn claim(&self, server: u32) -> Result<Slot<'_>, ManagerError> {
        let me = process_owner_id();
        let start = (std::process::id() as usize).wrapping_add(thread_hint());
        let mut round = 0u32;
        loop {
            for k in 0..SLOTS {
                let slot = self.slot(start.wrapping_add(k));
                if slot.owner.load(Ordering::Relaxed) == 0
                    && slot
                        .owner
                        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    slot.state.store(IDLE, Ordering::Relaxed);
                    return Ok(slot);
                }
            }
            for k in 0..SLOTS {
                let slot = self.slot(k);
                let owner = slot.owner.load(Ordering::Relaxed);
                let state = slot.state.load(Ordering::Acquire);
                // A slot with a request the manager process has not answered
                // is left alone: its reply must not reach a new caller.
                if owner != 0
                    && (state == IDLE || state == REPLY)
                    && !owner_alive(owner)
                    && slot
                        .owner
                        .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    slot.state.store(IDLE, Ordering::Relaxed);
                    return Ok(slot);
                }
            }
            if !owner_alive(server) {
                return Err(self.gone(server));
            }
            round += 1;
            if round < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

/// Frees a claimed slot when the call ends (however it ends).
struct Release<'a, 'b>(&'a Slot<'b>);

impl Drop for Release<'_, '_> {
    fn drop(&mut self) {
        let s = self.0;
        // A slot whose request the manager process may still answer stays
        // claimed by this (live) process: reusing it could hand its reply to
        // the next call. It is reclaimed when this process ends.
        let state = s.state.load(Ordering::Acquire);
        if state == IDLE || state == REPLY {
            s.state.store(IDLE, Ordering::Relaxed);
            // Release: the slot's words are no longer used when the next
            // claimer's Acquire CAS sees it free.
            s.owner.store(0, Ordering::Release);
        }
    }
}

fn thread_hint() -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish() as usize
}

impl Serialize for Hub {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(serializer)
    }
}

/// Attaches a hub received as its `Serialize` wrote it.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<Hub>, D::Error> {
    let seg = Segment::deserialize(deserializer)?;
    Hub::attach(seg).map_err(|e| match e {
        ManagerError::Segment(s) => shmproc_core::handle::decode_error(s),
        _ => shmproc_core::handle::decode_error(shmproc_core::SegmentError::Corrupted {
            field: "hub header",
            found: 0,
        }),
    })
}
