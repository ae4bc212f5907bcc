//! `Pool` and `ThreadPool` with Python's interface (`map`, `imap`,
//! `imap_unordered`, `starmap`, `apply_async`, ...).
//!
//! A [`Pool`]'s workers are processes fed through shared-memory rings: one
//! ring of tasks and one of results per worker, and a thread in the caller
//! (the driver) that hands out chunks, reads results, and notices a worker
//! that dies. Only the task that a dead worker was running fails (or is
//! retried); its other tasks go to the others, and a new worker takes its
//! place, so no call ever hangs on a dead worker.
//!
//! ```no_run
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), shmproc_pool::PoolError> {
//!     shmproc_core::init();
//!     let pool = shmproc_pool::Pool::new(2)?;
//!     assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
//!     Ok(())
//! }
//! ```
//!
//! # Trust
//!
//! A task ring is shared memory, so bytes in it are input: every frame is
//! checked, and a frame that names code (a function registration) is
//! accepted only with a tag made under a key that never passes through
//! shared memory (see `auth`). A worker that breaks the protocol is killed
//! and replaced.

mod api;
mod auth;
mod bell;
mod driver;
mod error;
mod job;
mod pool;
mod results;
mod sync;
mod task;
mod thread;
mod wire;
mod worker;

pub use api::PoolApi;
pub use error::{Exit, PoolError, TaskError, TaskFailure};
pub use pool::{NoInit, Pool, PoolBuilder, SharedInput};
pub use results::{AsyncResult, IMap};
#[doc(hidden)]
pub use task::conjure as __conjure;
pub use task::{Plain, StarTask, Task, WithState};
pub use thread::{ThreadPool, ThreadPoolBuilder, ThreadStarTask, ThreadTask};
pub use worker::Initializer;

/// What the command `shm` shows of a pool (hidden: for the command only).
#[doc(hidden)]
pub mod inspect {
    pub use crate::bell::describe;
}
