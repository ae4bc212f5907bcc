//! Linux system calls, one file per concept: [`mem`] (memfd, mmap, POSIX
//! shm), [`process`] (ids, `/proc`, fork/spawn, pidfd), [`socket`]
//! (`SCM_RIGHTS`), [`futex`] (waits, wakes, membarrier).
//!
//! Every function here is a thin, documented wrapper. Policy (what to create,
//! what to check) lives in the callers.

pub mod futex;
pub mod mem;
pub mod process;
pub mod socket;

pub use futex::*;
pub use mem::*;
pub use process::*;
pub use socket::*;
