//! Rings, queues and the higher-level objects built on them.
//!
//! - [`spsc`]: a typed single-producer single-consumer ring of plain data
//!   with batches, loans and blocking operations;
//! - [`mpmc`]: a bounded multi-producer multi-consumer ring of plain data
//!   that dead processes cannot wedge;
//! - [`bytes`]: a ring of framed variable-length byte messages, with loans,
//!   that streams messages larger than itself;
//! - [`queue`]: Python's `Queue`, `JoinableQueue` and `SimpleQueue` of
//!   serde messages;
//! - [`pipe`]: Python's `Pipe` and its `Connection`s.
//!
//! Still to come (later issues): `Pool` and `Manager`.

pub mod bytes;
pub mod mpmc;
pub mod pipe;
pub mod queue;
pub mod spsc;
