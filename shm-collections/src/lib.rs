//! Rings, queues and the higher-level objects built on them: typed and byte
//! rings with loans, `Queue`, `JoinableQueue`, `SimpleQueue`, `Pipe`, `Pool`
//! and `Manager`.
//!
//! Not yet built: this crate is the home of the queues issue, which builds
//! on `shm-core` and `shm-sync`. It exports nothing today.
