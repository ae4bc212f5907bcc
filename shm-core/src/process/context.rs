//! Start methods and contexts, as in Python's `multiprocessing.get_context`.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ExitReport, Process};
use crate::error::ContextError;

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
    /// (`SHM_START_METHOD=fork`) or by [`Process::from_closure`]: use
    /// [`Spawn`](Self::Spawn) or [`ForkServer`](Self::ForkServer) there.
    Fork,
    /// Start this executable again and run the target there (after
    /// `shm::init()` dispatches to it). Safe with threads; the slowest.
    Spawn,
    /// Ask the fork server, a single-threaded process forked at
    /// `shm::init()`, to fork the child. Safe with threads and nearly as
    /// fast as fork. The default, as in Python 3.14 on Linux.
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

/// `None` until set or first used; then fixed unless forced.
static DEFAULT: Mutex<Option<StartMethod>> = Mutex::new(None);

/// The method used when the environment says nothing: `ForkServer`, or the
/// value of `SHM_START_METHOD` (handy to run one program under each method).
fn initial_method() -> StartMethod {
    std::env::var("SHM_START_METHOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(StartMethod::ForkServer)
}

/// Sets the default start method for this process.
///
/// # Errors
///
/// [`ContextError`] if it was already set (or used) and `force` is false.
pub fn set_start_method(method: StartMethod, force: bool) -> Result<(), ContextError> {
    let mut d = DEFAULT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match *d {
        Some(current) if !force => Err(ContextError { current }),
        _ => {
            *d = Some(method);
            Ok(())
        }
    }
}

/// The default start method; fixes it if it was not set.
pub fn get_start_method() -> StartMethod {
    *DEFAULT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(initial_method)
}

/// The start methods this platform supports.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    StartMethod::ALL.to_vec()
}

/// A context: the process API bound to one start method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// The context of `method`, or of the default method when `None`.
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context {
        method: method.unwrap_or_else(get_start_method),
    }
}

impl Context {
    /// Its start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that runs `target(args)` with this context's method.
    pub fn process<A, R>(&self, target: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: ExitReport + 'static,
    {
        Process::new(target, args).with_start_method(self.method)
    }
}
