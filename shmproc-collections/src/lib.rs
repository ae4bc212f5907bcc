//! Rings, queues and the higher-level objects built on them.
//!
//! - [`spsc`]: a typed single-producer single-consumer ring of plain data
//!   with batches, loans and blocking operations;
//! - [`duplex`]: a two-way channel of plain data whose request/answer
//!   round trips cost one cache line, as a bare ping-pong does;
//! - [`mpmc`]: a bounded multi-producer multi-consumer ring of plain data
//!   that dead processes cannot wedge;
//! - [`bytes`]: a ring of framed variable-length byte messages, with loans,
//!   that streams messages larger than itself;
//! - [`queue`]: Python's `Queue`, `JoinableQueue` and `SimpleQueue` of
//!   serde messages;
//! - [`pipe`]: Python's `Pipe` and its `Connection`s.
//!
//! Still to come (later issues): `Pool` and `Manager`.

// Under loom only the typed rings and the duplex channel are built, on heap
// memory (`sync`): the modules built on segments, futexes and shmproc-sync's
// handles are left out.
#![cfg_attr(loom, allow(unused_imports, dead_code))]

pub mod bytes;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod inspect;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(not(loom))]
pub mod pipe;
pub mod queue;
mod ring;
pub use ring::{duplex, mpmc, spsc};
mod sync;
#[cfg(all(test, not(loom)))]
mod test_util;
