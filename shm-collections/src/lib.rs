//! Rings, queues and the higher-level objects built on them.
//!
//! Built so far: [`spsc`], a typed single-producer single-consumer ring of
//! plain data with loans and blocking operations, and [`mpmc`], a bounded
//! multi-producer multi-consumer ring that dead processes cannot wedge.
//! Still to come (the queues issue): byte rings, `Queue`, `JoinableQueue`,
//! `SimpleQueue`, `Pipe`, `Pool` and `Manager`.

pub mod mpmc;
pub mod spsc;
