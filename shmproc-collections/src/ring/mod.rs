//! The rings and what they share: the header layout constants and the
//! capacity check ([`ring_capacity`]), the sleep/wake handshake
//! (`handshake.rs`), peer liveness (`liveness.rs`), the atomic-word slot
//! copies (`slot.rs`), and the stop reasons of the waiting loops with how
//! they become `shmproc_core`'s error family. The typed rings live in
//! `spsc/`, `mpmc.rs` and `duplex.rs`; the crate re-exports them as
//! `shmproc_collections::{spsc, mpmc, duplex}`.

#[cfg(not(loom))]
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

#[cfg(not(loom))]
use shmproc_core::{Segment, SegmentError, TypeIdentity};

use shmproc_core::{Fault, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TrySendError};

pub mod duplex;
mod handshake;
mod liveness;
pub mod mpmc;
mod slot;
pub mod spsc;

pub(crate) use handshake::{Receive, receive, sleep_on, wake_for_close, wake_if_sleeping, wake_sleeper};
pub(crate) use liveness::{claim, peer_gone};
pub(crate) use slot::{load_slot, store_slot};

use crate::sync;

/// An `AtomicU32` of the shared header (shared memory: `core`'s type; under
/// loom, loom's, and the header is heap memory).
pub(crate) type Word = sync::AtomicU32;

/// Bytes of the header before the first slot: three 128-byte lines.
pub(crate) const HEADER: usize = 384;
/// Largest capacity.
pub const MAX_CAPACITY: usize = 1 << 30;

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

/// Why a waiting loop of a ring stopped without its item.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The caller's deadline passed.
    Timeout,
    /// The peer closed its end or died (and, receiving, nothing is left).
    Disconnected,
    /// See [`Fault`].
    Fault(Fault),
}

impl Stop {
    /// As the error of an untimed send, handing `v` back.
    pub(crate) fn send<T>(self, v: T) -> SendError<T> {
        match self {
            // An untimed wait has no deadline to pass; reported as
            // disconnected rather than a panic should that ever change.
            Self::Timeout | Self::Disconnected => SendError::Disconnected(v),
            Self::Fault(f) => SendError::Fault(v, f),
        }
    }

    /// As the error of a timed send of `timeout`, handing `v` back.
    pub(crate) fn send_timeout<T>(self, v: T, timeout: Duration) -> SendTimeoutError<T> {
        match self {
            Self::Timeout => SendTimeoutError::Timeout(v, timeout),
            Self::Disconnected => SendTimeoutError::Disconnected(v),
            Self::Fault(f) => SendTimeoutError::Fault(v, f),
        }
    }

    /// As the error of an untimed receive.
    pub(crate) fn recv(self) -> RecvError {
        match self {
            Self::Timeout | Self::Disconnected => RecvError::Disconnected,
            Self::Fault(f) => RecvError::Fault(f),
        }
    }

    /// As the error of a timed receive of `timeout`.
    pub(crate) fn recv_timeout(self, timeout: Duration) -> RecvTimeoutError {
        match self {
            Self::Timeout => RecvTimeoutError::Timeout(timeout),
            Self::Disconnected => RecvTimeoutError::Disconnected,
            Self::Fault(f) => RecvTimeoutError::Fault(f),
        }
    }
}

/// What a failed non-blocking send says about waiting: `Ok(v)` when full
/// (wait and try again), else why to stop.
pub(crate) fn full_or_stop<T>(e: TrySendError<T>) -> Result<T, (T, Stop)> {
    match e {
        TrySendError::Full(v) => Ok(v),
        TrySendError::Disconnected(v) => Err((v, Stop::Disconnected)),
        TrySendError::Fault(v, f) => Err((v, Stop::Fault(f))),
        // The family is non-exhaustive; a new kind is no reason to wait.
        other => Err((other.into_inner(), Stop::Disconnected)),
    }
}
