//! The raw peer of the ring rows: a minimal hand-tuned SPSC ring of `u64`
//! in a [`SharedMap`], sharing nothing with `shmproc::spsc`, and the spin wait
//! of the busy-polling rows.
//!
//! Lamport's ring with cached indices (Rigtorp's `SPSCQueue`): `tail`
//! (written by the producer) and `head` (by the consumer) on 128-byte
//! lines of their own, free-running `u64` positions, [`CAP`] slots. Each
//! side keeps a private copy of the other's index and re-reads the shared
//! one only when the copy says full (producer) or empty (consumer). One
//! message, or one batch, costs one index store. `N` slots, a power of two.
//!
//! # Memory ordering
//!
//! Slots are plain (Relaxed) atomic words, published by the Release store
//! of `tail` and acquired by the consumer's Acquire load of it; a slot is
//! handed back by the Release store of `head`, acquired by the producer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Instant;

use crate::groups::ping_pong::ABANDONED;
use crate::harness::shared_map::{AtomicU64, Padded, SharedMap, ZeroShared};

/// Slots in the rings of the throughput rows.
pub const CAP: usize = 4096;

/// The shared part: two indices and the slots.
#[repr(C)]
#[derive(Debug)]
pub struct HandRing<const N: usize> {
    tail: Padded<AtomicU64>,
    head: Padded<AtomicU64>,
    slots: [AtomicU64; N],
}

// SAFETY: atomics only; zero is "empty ring at position 0".
unsafe impl<const N: usize> ZeroShared for HandRing<N> {}

impl<const N: usize> HandRing<N> {
    const MASK: u64 = {
        assert!(N.is_power_of_two(), "a power of two slots");
        N as u64 - 1
    };

    /// The slot of position `pos`.
    #[inline]
    fn slot(&self, pos: u64) -> &AtomicU64 {
        &self.slots[narrow(pos & Self::MASK)]
    }
}

/// The writing end.
#[derive(Debug)]
pub struct HandTx<const N: usize> {
    ring: Arc<SharedMap<HandRing<N>>>,
    tail: u64,
    cached_head: u64,
}

/// The reading end.
#[derive(Debug)]
pub struct HandRx<const N: usize> {
    ring: Arc<SharedMap<HandRing<N>>>,
    head: u64,
    cached_tail: u64,
}

/// A fresh, empty ring of `N` slots and its two ends.
///
/// # Errors
///
/// If `mmap` fails.
pub fn channel<const N: usize>() -> io::Result<(HandTx<N>, HandRx<N>)> {
    let ring = Arc::new(SharedMap::<HandRing<N>>::new()?);
    let tx = HandTx {
        ring: Arc::clone(&ring),
        tail: 0,
        cached_head: 0,
    };
    Ok((
        tx,
        HandRx {
            ring,
            head: 0,
            cached_tail: 0,
        },
    ))
}

/// `usize` to `u64` (lossless on every target this runs on).
fn wide(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits u64")
}

/// `u64` to `usize`, for counts at most a slice's length.
fn narrow(n: u64) -> usize {
    usize::try_from(n).expect("at most a slice's length")
}

impl<const N: usize> HandTx<N> {
    /// Free slots, re-reading `head` if the cache says fewer than `want`.
    #[inline]
    fn free(&mut self, want: u64) -> u64 {
        let free = wide(N) - (self.tail - self.cached_head);
        if free >= want {
            return free;
        }
        // Acquire: pairs with the consumer's Release store of `head`.
        self.cached_head = self.ring.head.load(Acquire);
        wide(N) - (self.tail - self.cached_head)
    }

    /// Pushes `v` and publishes it; false when full.
    #[inline]
    pub fn try_push(&mut self, v: u64) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        // Relaxed: published by the Release store of `tail` below.
        self.ring.slot(self.tail).store(v, Relaxed);
        self.tail += 1;
        // Release: pairs with the consumer's Acquire load of `tail`.
        self.ring.tail.store(self.tail, Release);
        true
    }

    /// Pushes as many of `items` as fit with one publication; how many.
    #[inline]
    pub fn push_slice(&mut self, items: &[u64]) -> usize {
        let n = narrow(self.free(wide(items.len())).min(wide(items.len())));
        for (pos, v) in (self.tail..).zip(&items[..n]) {
            // Relaxed: published by the Release store of `tail` below.
            self.ring.slot(pos).store(*v, Relaxed);
        }
        if n > 0 {
            self.tail += wide(n);
            // Release: pairs with the consumer's Acquire load of `tail`.
            self.ring.tail.store(self.tail, Release);
        }
        n
    }
}

impl<const N: usize> HandRx<N> {
    /// Messages ready, re-reading `tail` if the cache says fewer than `want`.
    #[inline]
    fn ready(&mut self, want: u64) -> u64 {
        let n = self.cached_tail - self.head;
        if n >= want {
            return n;
        }
        // Acquire: pairs with the producer's Release store of `tail`.
        self.cached_tail = self.ring.tail.load(Acquire);
        self.cached_tail - self.head
    }

    /// Pops one message; `None` when empty.
    #[inline]
    pub fn try_pop(&mut self) -> Option<u64> {
        if self.ready(1) == 0 {
            return None;
        }
        // Relaxed: acquired with `tail` in `ready`.
        let v = self.ring.slot(self.head).load(Relaxed);
        self.head += 1;
        // Release: pairs with the producer's Acquire load of `head`.
        self.ring.head.store(self.head, Release);
        Some(v)
    }

    /// Pops up to `out.len()` messages with one publication; how many.
    #[inline]
    pub fn pop_into(&mut self, out: &mut [u64]) -> usize {
        let n = narrow(self.ready(wide(out.len())).min(wide(out.len())));
        for (pos, slot) in (self.head..).zip(&mut out[..n]) {
            // Relaxed: acquired with `tail` in `ready`.
            *slot = self.ring.slot(pos).load(Relaxed);
        }
        if n > 0 {
            self.head += wide(n);
            // Release: pairs with the producer's Acquire load of `head`.
            self.ring.head.store(self.head, Release);
        }
        n
    }
}

/// Calls `f` until it returns `Some`, busy-polling in between (a `pause`
/// per try, the same for every case).
///
/// # Panics
///
/// If nothing came for [`ABANDONED`]: the other process failed, and
/// spinning forever would leave an orphan burning a CPU.
#[inline]
pub fn spin_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let mut tries = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        if let Some(v) = f() {
            return v;
        }
        core::hint::spin_loop();
        tries = tries.wrapping_add(1);
        if tries.is_multiple_of(1 << 16) {
            let t = *since.get_or_insert_with(Instant::now);
            assert!(t.elapsed() < ABANDONED, "the other process stopped answering");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_batches_and_full() {
        let (mut tx, mut rx) = channel::<CAP>().expect("map");
        assert_eq!(rx.try_pop(), None);
        for i in 0..wide(CAP) {
            assert!(tx.try_push(i));
        }
        assert!(!tx.try_push(9), "full");
        assert_eq!(tx.push_slice(&[1, 2]), 0);
        assert_eq!(rx.try_pop(), Some(0));
        let mut out = [0; 16];
        assert_eq!(rx.pop_into(&mut out), 16);
        assert_eq!(out[15], 16);
        assert_eq!(tx.push_slice(&[7; 20]), 17);
        let mut drained = 0;
        while rx.pop_into(&mut out) > 0 {
            drained += 1;
        }
        assert!(drained > 0);
        assert_eq!(spin_until(|| Some(3)), 3);
    }
}
