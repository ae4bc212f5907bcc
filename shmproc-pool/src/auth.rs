//! Authenticated function registrations.
//!
//! A task ring lives in shared memory, which (the trust model says) a
//! scribbling peer may write. A code offset read from it must not become a
//! call unless the pool's parent wrote it. The parent draws a random key
//! per pool and hands it to each worker among its start arguments, which
//! never pass through shared memory (the bootstrap socket of spawn and
//! forkserver, the copied memory of fork). A registration carries
//! SipHash-2-4 of `(fn_id, offset)` under that key: a 128-bit-keyed PRF, so
//! nobody without the key can make a tag the worker accepts.

use std::hash::Hasher as _;
use std::io::Read as _;

use serde::{Deserialize, Serialize};

/// A pool's registration key.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Key([u64; 2]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh key from the system's random source.
    pub(crate) fn random() -> std::io::Result<Self> {
        let mut b = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        let (lo, hi) = b.split_at(8);
        Ok(Self([
            u64::from_le_bytes(lo.try_into().expect("8 bytes")),
            u64::from_le_bytes(hi.try_into().expect("8 bytes")),
        ]))
    }

    /// The tag of registration `(fn_id, offset)`.
    pub(crate) fn tag(&self, fn_id: u32, offset: u64) -> u64 {
        #[allow(
            deprecated,
            reason = "std's SipHasher is SipHash-2-4, the keyed PRF wanted here; only its name is deprecated (for hashing tables)"
        )]
        let mut h = std::hash::SipHasher::new_with_keys(self.0[0], self.0[1]);
        h.write_u32(fn_id);
        h.write_u64(offset);
        h.finish()
    }

    /// Whether `tag` is the tag of `(fn_id, offset)`.
    pub(crate) fn verify(&self, fn_id: u32, offset: u64, tag: u64) -> bool {
        // Not constant-time: a forger learns nothing from timing here (one
        // wrong tag is one failed task, and the key never changes its
        // comparisons' early exit in a way a ring writer can observe).
        self.tag(fn_id, offset) == tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_depend_on_key_and_fields() {
        let k = Key::random().expect("urandom");
        let t = k.tag(1, 4096);
        assert!(k.verify(1, 4096, t));
        assert!(!k.verify(2, 4096, t));
        assert!(!k.verify(1, 4097, t));
        let other = Key::random().expect("urandom");
        assert!(!other.verify(1, 4096, t));
    }
}
