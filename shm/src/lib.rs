//! shm: Python's `multiprocessing`, rebuilt so that every shared object lives
//! directly in shared memory.
//!
//! ```no_run
//! use shm::prelude::*;
//!
//! fn child(counter: RawValue<u64>) {
//!     counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     shm::init(); // first line of main: children dispatch here
//!     let counter = RawValue::new(0u64)?;
//!     let p = Process::new(child, counter.clone());
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 1);
//!     Ok(())
//! }
//! ```

pub use shm_collections::pipe::{Connection, Pipe, PipeError};
pub use shm_collections::queue::{JoinableQueue, PutError, Queue, QueueError, SimpleQueue};
pub use shm_collections::{bytes, duplex, mpmc, pipe, queue, spsc};
pub use shm_core::*;
pub use shm_sync::park;
pub use shm_sync::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, LockResult, OwnerDied, RLock, RLockGuard,
    Semaphore, SharedLock, SharedLockGuard, SyncError, TryLockError, TryLockResult, Value,
};

/// The names most programs use.
pub mod prelude {
    pub use shm_collections::pipe::{Connection, Pipe, PipeError};
    pub use shm_collections::queue::{JoinableQueue, Queue, QueueError, SimpleQueue};
    pub use shm_core::{
        Process, RawArray, RawValue, StartMethod, Worker, active_children, cpu_count, current_process, get_context,
        parent_process,
    };
    pub use shm_sync::{Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value};
}

/// The README's code, compiled as a doctest so it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
