//! Python's queues in shared memory: [`Queue`], [`JoinableQueue`] and
//! [`SimpleQueue`] of serde messages, any number of producers and
//! consumers in any number of processes.
//!
//! # Design
//!
//! One segment holds a [byte ring](crate::bytes) of framed messages and two
//! [`ProcessLock`](shmproc_sync::ProcessLock)s: producers take the put lock to write a message, and
//! consumers the get lock to read one (Michael and Scott's two-lock queue
//! on a ring). Producers and consumers never wait for each other's lock,
//! only for room or for messages, and a put is one lock, one copy of the
//! serialised bytes and one index store. Items are serialised with
//! postcard in the caller's thread before the lock is taken, so an item
//! that cannot be serialised is an error of that `put`, never a lost
//! message (Python's queue pickles later, in a feeder thread).
//!
//! # Dead processes
//!
//! - A process killed while holding a lock: the next taker gets the lock
//!   within a liveness slice ([`ProcessLock`](shmproc_sync::ProcessLock)) and repairs what the dead
//!   holder left. A message is published by one index store, so a producer
//!   killed while writing never publishes half a message; a message whose
//!   streaming it had started is ended by an `Abort` frame, and readers
//!   drop the part they hold. The message counts (`qsize`, `maxsize`,
//!   `JoinableQueue`'s unfinished tasks) are bumped just before the
//!   publishing store with a note of the index; a taker that finds the
//!   note and an unmoved index takes the bump back. Consumers do the same
//!   with the read index: a consumer killed before handing a message back
//!   leaves it to the next consumer, so every published message is taken
//!   exactly once. A consumer copies and deserialises a message before it
//!   hands it back (one index store), so the only window in which a killed
//!   consumer takes a committed message with it is the return from `get`
//!   itself, after that store. Messages larger than half the ring are the
//!   exception: their parts are handed back as they are read, so one is
//!   lost with a consumer killed while reading it.
//! - A blocked `get` (or `put`) wakes every liveness slice and checks that
//!   some other process that uses the queue still runs. Processes register
//!   in the segment when they create or receive the queue or first use it.
//!   The call also waits on while a handle is on its way to a child (it
//!   was serialised and not yet received) or while the caller has running
//!   children (a forked child may not have used the queue yet). Otherwise,
//!   when every other registered process is dead, the call returns
//!   `Disconnected`. A queue used only by the threads of one
//!   process is never disconnected; threads of a process whose peer
//!   processes all died are (the queue cannot tell threads apart).
//!
//! # Bad input
//!
//! The ring checks every frame it reads; the counts are clamped; a message
//! that does not deserialise is an error for that message only.

#[cfg(loom)]
mod heap;
mod ops;
mod shared;

// Under loom only the mapped queue (`shared`) is built, on heap memory: the
// handles and their segments are not.
#[cfg(not(loom))]
mod api;
#[cfg(not(loom))]
mod joinable;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(not(loom))]
mod simple;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use api::Queue;
#[cfg(not(loom))]
pub(crate) use api::de;
#[cfg(not(loom))]
pub use joinable::JoinableQueue;
#[cfg(not(loom))]
pub(crate) use shared::describe;
#[cfg(not(loom))]
pub use simple::SimpleQueue;

/// Bytes of ring a queue gets unless told otherwise (pages are only used
/// as messages reach them).
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Processes a queue remembers for its liveness checks; past that, blocked
/// calls can no longer tell that every peer died and only time out.
pub const MAX_PEERS: usize = 64;
/// `task_done` was called more times than items were put (Python's
/// `ValueError` of `JoinableQueue.task_done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than items were put on the joinable queue")]
pub struct TaskDoneError;

impl From<TaskDoneError> for shmproc_core::Error {
    fn from(e: TaskDoneError) -> Self {
        Self::new(shmproc_core::ErrorKind::Usage, e)
    }
}
