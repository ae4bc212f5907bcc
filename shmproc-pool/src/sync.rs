//! The one switch for atomics (STYLE.md 1). The pool's own words are a
//! doorbell and counters; the algorithms that loom checks are the rings'
//! and locks' it is built on, so this switch has no loom branch. Aliases,
//! as in shmproc-collections, so that the code compiles to the `core` types.

pub(crate) mod atomic {
    pub(crate) use core::sync::atomic::Ordering;

    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicBool = core::sync::atomic::AtomicBool;
    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicU8 = core::sync::atomic::AtomicU8;
    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicU32 = core::sync::atomic::AtomicU32;
    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;
}
