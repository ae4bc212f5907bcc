//! The one switch for atomics (STYLE.md 1). The store's algorithm is
//! checked by the crash tests across real processes and by unit tests; it
//! has no loom model, so this switch has no loom branch.

pub(crate) mod atomic {
    pub(crate) use core::sync::atomic::Ordering;

    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicU32 = core::sync::atomic::AtomicU32;
    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;
    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicUsize = core::sync::atomic::AtomicUsize;
}
