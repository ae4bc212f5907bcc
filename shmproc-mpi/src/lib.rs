//! Beyond one machine: a program launched by `mpirun` (or `srun`) gets a
//! `World` of ranks and the objects of `shm` across them, with traffic
//! between ranks of one node in shared memory and MPI only between nodes.
//! No network layer of our own.
//!
//! | object | made by (every rank, same order) | same node | other nodes |
//! |---|---|---|---|
//! | `DistQueue`, `DistJoinableQueue` | `world.queue(owner, maxsize)`, `world.joinable_queue(..)` | the owner's `Queue` in place | `put` streams to the owner (acknowledged a window at a time), `get`/`task_done`/`join` ask it |
//! | `DistPool` | `world.pool(n)` | a `Pool` of `n` workers per node, on its leader | chunks of tasks sent to each node's leader |
//! | `DistDict`, `DistList`, `DistNamespace` | `world.dict(owner)`, `world.list(..)`, `world.namespace(..)` | the container's segment in place (crash-safe, as `shmproc::Dict`) | each operation asked of the owner |
//! | `DistProxy` | `world.proxy(owner, make)` | the manager's mailboxes, as `shmproc::Proxy` | each call asked of the owner |
//!
//! Every object counts its operations each way (`Traffic`): same-node
//! traffic never goes through MPI. A task of a pool, or the change a
//! `modify` makes on another node, is a function of this executable (the
//! ranks compare their executables at start): it travels as a code offset,
//! and a closure that captures anything does not compile.
//!
//! (Links to the items need the feature: `cargo doc --features mpi`.)
//!
//! The crate is empty unless its `mpi` feature is on (the `shm` crate's
//! `mpi` feature turns it on); the default build needs no MPI.
//!
//! # What it needs and checks
//!
//! - MPI's `MPI_THREAD_SERIALIZED`: every MPI call after start-up goes
//!   through the rank's engine, one thread at a time; `World::init`
//!   refuses a library that offers less. A communication thread drives the
//!   engine, except while a thread waits for a message: that thread drives
//!   it itself for up to 2 ms (spinning, with a system call every few
//!   steps), so a reply is taken without a wake-up (60-70 us on a virtual
//!   machine's idle core, more than a TCP round trip between hosts).
//! - Call `shmproc::init()` first, then `World::init`: the fork server starts
//!   before MPI, so children (pool workers, a manager process started with
//!   `StartMethod::ForkServer`) never inherit MPI's state.
//! - A program started without `mpirun` is a world of one (MPI's singleton
//!   start).
//!
//! # Failures
//!
//! - A task that panics, or whose worker process dies, fails alone: its
//!   item comes back as `MpiError::Task` naming the task's index, the
//!   worker, its host and the signal; the node's pool replaces the worker
//!   and every other task completes.
//! - A put that fails on the owner (an item that does not decode, a closed
//!   queue) is reported by a later `put` or `flush` of the same handle.
//! - A container operation that fails on the owner comes back as
//!   `MpiError::Refused` with the owner's reason.
//! - MPI's world is static: when a rank dies, `mpirun` ends the whole job
//!   (Open MPI kills the other ranks and exits non-zero). Nothing here
//!   promises more; a rank never hangs on a dead peer past the job's end.

#[cfg(feature = "mpi")]
mod code;
#[cfg(feature = "mpi")]
mod objects;
#[cfg(feature = "mpi")]
mod pool;
#[cfg(feature = "mpi")]
mod queue;
#[cfg(feature = "mpi")]
mod sync;
#[cfg(feature = "mpi")]
mod world;

#[cfg(feature = "mpi")]
pub use objects::{DistDict, DistList, DistNamespace, DistProxy};
#[cfg(feature = "mpi")]
pub use pool::{DistAsyncResult, DistIMap, DistPool};
#[cfg(feature = "mpi")]
pub use queue::{DistJoinableQueue, DistQueue, PUT_WINDOW, Traffic};
#[cfg(feature = "mpi")]
pub use world::{MpiError, World};

/// Whether this process was launched by an MPI launcher (`mpirun`,
/// `mpiexec`, `srun`) with more than one rank, from its environment.
pub fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .filter(|&n: &usize| n > 1)
}
