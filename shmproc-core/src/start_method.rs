//! [`StartMethod`]: a leaf module (std and serde only), so that both the
//! launcher and the error types can name it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a child process is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// `fork()` the parent. The fastest, and the only method that runs
    /// closures, but opt-in: after a fork only the forking thread exists, so
    /// in a parent that runs other threads the child may deadlock on a lock
    /// one of them held (the allocator's, stdout's, a mutex of yours).
    /// Python deprecated fork as its default for this reason. Here a fork
    /// start in a process that runs more than one thread is refused with
    /// [`ProcessError::ForkWithThreads`](crate::ProcessError::ForkWithThreads),
    /// whether fork was chosen for the process, for the program
    /// (`SHM_START_METHOD=fork`) or by [`Process::from_closure`](crate::Process::from_closure): use
    /// [`Spawn`](Self::Spawn) or [`ForkServer`](Self::ForkServer) there.
    Fork,
    /// Start this executable again and run the target there (after
    /// `shmproc::init()` dispatches to it). Safe with threads; the slowest.
    Spawn,
    /// Ask the fork server, a single-threaded process forked at
    /// `shmproc::init()`, to fork the child. Safe with threads and nearly as
    /// fast as fork. The default, as in Python 3.14 on Linux.
    ///
    /// The server's pid is [`forkserver_pid()`](crate::forkserver_pid)
    /// (`None` before it is started); the children it forks are its own
    /// children in the kernel's eyes, yet joined, reaped and reported to the
    /// process that started them as with the other methods.
    ForkServer,
}

impl StartMethod {
    /// Every method, in Python's order of `get_all_start_methods()`.
    pub const ALL: [Self; 3] = [Self::ForkServer, Self::Spawn, Self::Fork];

    /// Python's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fork => "fork",
            Self::Spawn => "spawn",
            Self::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown start method name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown start method {0:?}: expected fork, spawn or forkserver")]
pub struct UnknownStartMethod(pub String);

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fork" => Ok(Self::Fork),
            "spawn" => Ok(Self::Spawn),
            "forkserver" => Ok(Self::ForkServer),
            other => Err(UnknownStartMethod(other.to_owned())),
        }
    }
}
