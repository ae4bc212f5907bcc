//! Synchronisation primitives that live in shared memory: [`Lock`],
//! [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`],
//! [`Barrier`], and [`Value`]/[`Array`] with a lock of their own.
//!
//! Each is a few `u32` words in a shared segment, driven by the futex system
//! call without the private flag. Uncontended operations are one atomic
//! instruction; a wake is a system call made only when someone sleeps. Each
//! operation comes blocking (`acquire`, `wait`), non-blocking (`try_acquire`)
//! and timed (`acquire_timeout`, `wait_timeout`). A lock whose holder dies
//! is released and reported with [`OwnerDied`] to every acquirer until
//! someone `recover`s it, never left locked forever. Every object can be
//! created under a name (`create_named`) and `open`ed by any process.
//!
//! The algorithms take their waiting and waking as a parameter ([`park`]),
//! so the same code is model-checked under loom (`RUSTFLAGS="--cfg loom"`).

// Under loom only the algorithms are built, not the shared-memory handles.
#![cfg_attr(loom, allow(unused_imports, dead_code))]

#[cfg(not(loom))]
mod action;
mod barrier;
mod condition;
pub mod error;
mod event;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod inspect;
#[macro_use]
mod lock_api;
mod lock;
#[cfg(all(test, loom))]
mod loom_tests;
pub mod park;
mod rlock;
mod semaphore;
mod shared;
mod sync;
#[cfg(not(loom))]
mod value;

#[cfg(not(loom))]
pub use barrier::{Barrier, MAX_PARTIES};
#[cfg(not(loom))]
pub use condition::{Condition, ConditionGuard, MAX_WAITERS};
pub use error::{AcquireTimeoutError, BarrierError, ConditionError, OwnerDied, SyncError, TryAcquireError};
#[cfg(not(loom))]
pub use event::Event;
#[cfg(not(loom))]
pub use lock::{Lock, LockGuard};
// Hidden: the raw lock word the queues embed in their own headers; not API.
// Built under loom too, for the queues' models.
#[doc(hidden)]
pub use lock::ProcessLock;
#[cfg(not(loom))]
pub use rlock::{RLock, RLockGuard};
#[cfg(not(loom))]
pub use semaphore::{BoundedSemaphore, SEM_VALUE_MAX, Semaphore, SemaphoreGuard};
#[cfg(not(loom))]
pub use value::{Array, SharedLock, SharedLockGuard, Value};
