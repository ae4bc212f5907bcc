//! Helpers of the unit tests: bounded runs and seeded scribbles.

#![allow(clippy::cast_possible_truncation, reason = "random numbers: truncation is fine")]

use std::sync::atomic::Ordering::Relaxed;

use crate::sync::AtomicU32;
use std::time::Duration;

/// How long one operation on a scribbled ring may take before the test
/// calls it hung (the liveness bounds are 1 s at most); Miri interprets,
/// and gets longer.
pub(crate) const HUNG: Duration = Duration::from_secs(if cfg!(miri) { 600 } else { 10 });

/// Runs `f` on a thread and panics if it does not return within [`HUNG`].
pub(crate) fn bounded<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HUNG) {
        Ok(r) => r,
        Err(e) => panic!("{what}: hung or panicked (no answer within {HUNG:?}: {e})"),
    }
}

/// A seeded xorshift generator: reproducible scribbles.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Writes `count` random words (random values, small values, values near
/// what is there) at random 4-aligned offsets of `len` bytes at `base`, as
/// a scribbling peer would: through atomics, as every access to shared
/// memory is.
///
/// # Safety
///
/// `base` is 4-aligned and valid for `len` bytes, all accessed atomically.
pub(crate) unsafe fn scribble(base: *mut u8, len: usize, count: usize, rng: &mut Rng) {
    for _ in 0..count {
        let off = rng.below(len / 4) * 4;
        // SAFETY: in bounds and aligned (caller); atomic access.
        let word = unsafe { AtomicU32::from_ptr(base.wrapping_add(off).cast()) };
        let old = word.load(Relaxed);
        let new = match rng.below(4) {
            0 => rng.next() as u32,
            1 => rng.below(8) as u32,
            2 => old.wrapping_add(rng.below(200) as u32).wrapping_sub(100),
            // Our own pid in an owner word costs the 1 s claim bound to
            // detect: too slow to interpret under Miri.
            _ if cfg!(miri) => 0,
            _ => std::process::id(),
        };
        word.store(new, Relaxed);
    }
}
