//! The one switch for atomics (STYLE.md 1): `core` in every build that
//! touches shared memory, `loom` under `--cfg loom`, where the algorithms run
//! on heap memory and loom explores their interleavings.
//!
//! Aliases rather than re-exports, so that clippy's ban on naming
//! `core::sync::atomic` types directly holds everywhere else.

#[cfg(not(loom))]
#[allow(clippy::disallowed_types, reason = "this is the switch module")]
pub(crate) type AtomicU32 = core::sync::atomic::AtomicU32;

#[cfg(loom)]
pub(crate) type AtomicU32 = loom::sync::atomic::AtomicU32;

pub(crate) use core::sync::atomic::Ordering;
