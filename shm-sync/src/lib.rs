//! Synchronisation primitives that live in shared memory: `Lock`, `RLock`,
//! `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, and the
//! locked `Value`/`Array`.
//!
//! Not yet built: this crate is the home of the synchronisation issue, which
//! builds on `shm-core`'s segments and handles. It exports nothing today.
