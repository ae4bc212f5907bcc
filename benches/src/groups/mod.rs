//! The benchmark groups, one module each, in the order `compare` runs them.
//! Each has a `run(Mode, &mut Report)` that measures ours against its peers
//! in the same run.

pub mod manager;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod peers;
pub mod ping_pong;
pub mod pool;
pub mod process_start;
pub mod ring;
pub mod sync;
pub mod value;
pub mod wake;
