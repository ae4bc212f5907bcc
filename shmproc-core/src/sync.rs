//! The one switch for atomics (STYLE.md 1).
//!
//! Views of shared memory (`&AtomicU32` over a mapped segment) use the `core`
//! types: their layout is that of the plain integer, which is what another
//! process sees. The synchronisation crate adds a `loom` branch for the
//! algorithms it model-checks on heap memory.

/// Atomics laid over shared memory.
#[allow(clippy::disallowed_types, reason = "this is the switch module")]
pub mod shared {
    pub use core::sync::atomic::{
        AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
        Ordering,
    };
}
