//! The one switch for atomics (STYLE.md 1): process-local counters only
//! (reply tags, operation counts, who drives the MPI engine); no shared-memory algorithm lives here.

pub(crate) mod atomic {
    pub(crate) use core::sync::atomic::Ordering;

    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicBool = core::sync::atomic::AtomicBool;
    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicU32 = core::sync::atomic::AtomicU32;
    #[allow(clippy::disallowed_types, reason = "this is the switch module")]
    pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;
}
