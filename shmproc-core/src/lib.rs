//! The floor of shm: platform calls, shared segments, typed shared values and
//! the process launcher. Users depend on the `shm` crate, which re-exports
//! all of this.
//!
//! - [`Segment`]: a validated shared mapping (anonymous memfd, or named).
//! - [`RawValue`], [`RawArray`]: plain data in shared memory, with atomics
//!   for integers.
//! - [`Process`]: Python's process API with the fork, spawn and forkserver
//!   start methods; shared objects passed as arguments are shared, not copied.

pub mod array;
pub mod atomic;
pub mod error;
// Hidden: used by the sibling crates shmproc-sync/shmproc-collections, not API
// (serialising handles across processes).
#[doc(hidden)]
pub mod handle;
// Hidden: used by the sibling crates shmproc-sync/shmproc-collections, not API
// (the one liveness check, for their owner and peer words).
#[doc(hidden)]
pub mod liveness;
mod log;
pub mod process;
pub mod segment;
mod start_method;
mod sync;
// Hidden: used by the sibling crates shmproc-sync/shmproc-collections, not API
// (the only place that makes system calls).
#[doc(hidden)]
pub mod sys;
pub mod value;

pub use array::RawArray;
pub use atomic::{AtomicInteger, ShmSafe};
pub use error::{
    BootstrapError, ContextError, Error, ErrorKind, Fault, HandleError, OutOfBounds, ProcessError, RecvError,
    RecvTimeoutError, SegmentError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use log::log_to_stderr;
pub use process::{
    Context, CurrentProcess, ExitReport, FnRef, ParentProcess, Process, StartMethod, Worker, active_children,
    current_process, forkserver_pid, get_all_start_methods, get_context, get_start_method, init, parent_process,
    set_start_method,
};
pub use segment::{Segment, SegmentInfo, SegmentKind, SegmentObject, TypeIdentity};
pub use value::RawValue;

/// What [`segment_object!`] expands to names, so the crates that use it
/// need not depend on the same serde themselves.
#[doc(hidden)]
pub mod __private {
    pub use serde;
}

/// How long a sleeper waits before it checks that the process it waits for
/// is still alive (a lock holder, a ring's peer, a queue's other users): a
/// dead peer is noticed within this time, and a wake that could not be
/// delivered (see [`sys::membarrier_active`]) costs at most this much.
/// Every blocking call of the library sleeps in slices of this length.
pub const LIVENESS_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

/// Number of CPUs this process may use (Python's `cpu_count()`).
pub fn cpu_count() -> usize {
    sys::cpu_count()
}
