//! `Manager` and its containers: dict, list and namespace used in place in
//! shared memory, crash-safe like LMDB.
//!
//! Python's manager keeps its objects in a server process, so every access
//! is a round trip (43-51 us here), and `d[k] += 1` from two processes loses
//! updates. Here a [`Dict`], [`List`] or [`Namespace`] lives in a shared
//! segment of its own that every process holding a handle reads and writes
//! directly:
//!
//! - **in place**: an allocator inside the segment (offsets, never
//!   pointers); the segment grows as the container does, without stopping
//!   anybody, and every process sees the new room;
//! - **consistent reads without a lock**: a reader copies what it needs
//!   and checks a sequence word that writers move, retrying if one did;
//! - **crash-safe writes**: a writer holds the container's lock (taken over
//!   within a liveness slice if its holder dies) and logs the old value of
//!   every word it changes in place; everything larger is built in fresh
//!   blocks behind one word. A writer killed at any instruction leaves the
//!   container as it was before that call or after it: the next writer plays
//!   the log back, which also frees what the dead writer had allocated;
//! - **atomic read-modify-write**: [`Dict::modify`], [`List::modify`] and
//!   [`Namespace::modify`] run a closure on one entry under the lock.
//!
//! Every word read from the segment is checked (offsets, lengths, block
//! tags): a scribbled container answers [`ManagerError::Corrupted`], never
//! undefined behaviour, a panic or a hang.

// Offsets and lengths are u64 in shared memory and usize in this process;
// the crate targets 64-bit Linux, where the two are one width.
#![allow(
    clippy::cast_possible_truncation,
    reason = "u64 and usize are one width here (asserted below)"
)]

const _: () = assert!(
    size_of::<usize>() == size_of::<u64>(),
    "shmproc-manager needs a 64-bit target"
);

mod dict;
mod dynamic;
mod error;
#[doc(hidden)]
pub mod inspect;
mod list;
mod manager;
mod namespace;
mod served;
mod store;
mod sync;

pub use dict::Dict;
pub use dynamic::Dynamic;
pub use error::ManagerError;
pub use list::List;
pub use manager::{Manager, ManagerBuilder};
pub use namespace::Namespace;
pub use served::{CallFailure, Proxy, Reply, Served};
// Hidden: what `served!` expands to names; not API.
#[doc(hidden)]
pub use served::__private as __served;
