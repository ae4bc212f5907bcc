//! Rings, queues and the higher-level objects built on them.
//!
//! Built so far: [`spsc`], a typed single-producer single-consumer ring of
//! plain data with loans and blocking operations. Still to come (the queues
//! issue): the multi-producer ring, byte rings, `Queue`, `JoinableQueue`,
//! `SimpleQueue`, `Pipe`, `Pool` and `Manager`.

pub mod spsc;
