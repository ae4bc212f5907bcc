//! Beyond one machine: a program launched by `mpirun` (or `srun`) gets a
//! `World` of ranks, and a `DistQueue` that every rank uses with
//! `put`/`get`. Ranks on the owner's node use the shared-memory `Queue`
//! directly; ranks on other nodes reach it through MPI messages served by
//! threads of the owner rank. No network layer of our own.
//!
//! The crate is empty unless its `mpi` feature is on (the `shm` crate's
//! `mpi` feature turns it on); the default build needs no MPI.
//!
//! # What it needs and checks
//!
//! - MPI's `MPI_THREAD_SERIALIZED`: one communication thread per rank
//!   makes every MPI call after start-up (the owner serves remote ranks
//!   while its own threads use the queue); `World::init` refuses a
//!   library that offers less.
//! - Call `shm::init()` first, then `World::init`: the fork server starts
//!   before MPI, so children never inherit MPI's state.
//! - A program started without `mpirun` is a world of one (MPI's singleton
//!   start).
//!
//! # Failures
//!
//! MPI's world is static: when a rank dies, `mpirun` ends the whole job
//! (Open MPI kills the other ranks and exits non-zero). Nothing here
//! promises more; a rank never hangs on a dead peer past the job's end.

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
