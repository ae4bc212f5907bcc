//! What a pool's calls and tasks report.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a worker process ended: an exit code, or the signal that killed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    /// It exited with this code (`std::process::exit(n)` inside a task,
    /// say).
    Code(i32),
    /// A signal killed it (9 for SIGKILL, 6 for an abort, ...).
    Signal(i32),
    /// Its end could not be learned (its reaper died first).
    Unknown,
}

impl Exit {
    /// From the exit code convention of [`shmproc_core::Process::exitcode`]:
    /// minus the signal number when a signal killed it.
    pub(crate) fn from_code(code: Option<i32>) -> Self {
        match code {
            Some(c) if c < 0 => Self::Signal(-c),
            Some(c) => Self::Code(c),
            None => Self::Unknown,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit code {c}"),
            Self::Signal(9) => f.write_str("signal 9 (SIGKILL)"),
            Self::Signal(6) => f.write_str("signal 6 (SIGABRT)"),
            Self::Signal(11) => f.write_str("signal 11 (SIGSEGV)"),
            Self::Signal(15) => f.write_str("signal 15 (SIGTERM)"),
            Self::Signal(s) => write!(f, "signal {s}"),
            Self::Unknown => f.write_str("an unknown end"),
        }
    }
}

/// Why one task failed (the other tasks of the call go on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TaskFailure {
    /// The task panicked; the panic's message and location.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The worker running it died (killed, aborted, exited inside the task,
    /// out of memory); it was replaced.
    #[error("its worker died ({0}) while running it")]
    WorkerDied(Exit),
    /// It ran past the pool's task timeout; its worker was killed and
    /// replaced.
    #[error("ran past the task timeout of {0:?}; its worker was killed and replaced")]
    TimedOut(Duration),
    /// Its argument did not deserialise in the worker.
    #[error("its argument did not deserialise in the worker: {0}")]
    DecodeArgument(String),
    /// Its result did not serialise in the worker.
    #[error("its result did not serialise: {0}")]
    EncodeResult(String),
    /// Its result did not deserialise in the caller.
    #[error("its result did not deserialise in the caller: {0}")]
    DecodeResult(String),
    /// Its argument or result is larger than a frame of the pool's rings.
    #[error(
        "its {what} of {len} bytes exceeds the pool's frame limit of {max} bytes (pass large data as the pool's shared input or in a shared array)"
    )]
    TooLarge {
        /// `"argument"` or `"result"`.
        what: String,
        /// Its encoded length.
        len: usize,
        /// The largest frame the ring carries.
        max: usize,
    },
    /// The pool could not run it: its workers' initializer failed, or the
    /// pool was terminated before it ran.
    #[error("not run: {0}")]
    NotRun(String),
}

/// A task that failed: which one, on which worker, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task {index} failed on {worker}: {failure}")]
pub struct TaskError {
    /// Its index in the call's input (0 for `apply`).
    pub index: usize,
    /// The name of the worker that ran (or was to run) it, as Python names
    /// them: `ForkPoolWorker-3`, `SpawnPoolWorker-1`, `ForkServerPoolWorker-2`,
    /// `Thread-1` for a thread pool.
    pub worker: String,
    /// Why.
    pub failure: TaskFailure,
}

/// Why a pool call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A task failed (`map`, `apply` and `get` report the first failure in
    /// input order; `imap` reports each task's own).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The pool was closed: no new work is taken.
    #[error("the pool is closed: no new work is taken")]
    Closed,
    /// The pool was terminated (or dropped) before the work was done.
    #[error("the pool was terminated before the work was done")]
    Terminated,
    /// `join` was called before `close` or `terminate`.
    #[error("join needs the pool closed or terminated first (call close)")]
    NotClosed,
    /// A pool of zero processes or threads.
    #[error("a pool needs at least one worker (processes = 0)")]
    NoWorkers,
    /// A chunk size of zero.
    #[error("the chunk size must be at least 1")]
    ZeroChunksize,
    /// A thread pool's result was already moved out by an earlier `get`.
    #[error("the result was already taken by an earlier get")]
    Taken,
    /// A waiting call ran out of time (`get_timeout`, `wait_timeout`).
    #[error("timed out after {0:?} waiting for the result")]
    Timeout(Duration),
    /// The workers' initializer panicked, exited or was killed: the pool
    /// stops taking work (it does not start workers in a loop).
    #[error("the initializer failed in {worker}: {cause}")]
    Initializer {
        /// The worker whose initializer failed.
        worker: String,
        /// The panic message, or how the worker ended.
        cause: String,
    },
    /// An argument did not serialise in the caller.
    #[error("argument {index} did not serialise: {detail}")]
    Encode {
        /// Its index in the call's input.
        index: usize,
        /// The serialiser's message.
        detail: String,
    },
    /// Starting a worker process failed.
    #[error("starting a pool worker failed: {0}")]
    Start(#[from] shmproc_core::ProcessError),
    /// Creating the pool's shared memory failed.
    #[error("creating the pool's shared memory failed: {0}")]
    Segment(#[from] shmproc_core::SegmentError),
    /// Starting the pool's thread failed.
    #[error("starting the pool's thread failed: {0}")]
    Thread(String),
}

impl From<PoolError> for shmproc_core::Error {
    fn from(e: PoolError) -> Self {
        use shmproc_core::ErrorKind;
        let kind = match &e {
            PoolError::Task(_) | PoolError::Initializer { .. } => ErrorKind::Other,
            PoolError::Closed | PoolError::Terminated => ErrorKind::Disconnected,
            PoolError::NotClosed | PoolError::NoWorkers | PoolError::ZeroChunksize | PoolError::Taken => {
                ErrorKind::Usage
            }
            PoolError::Timeout(_) => ErrorKind::Timeout,
            PoolError::Encode { .. } => ErrorKind::Serialization,
            PoolError::Start(_) | PoolError::Thread(_) => ErrorKind::Process,
            PoolError::Segment(_) => ErrorKind::Segment,
        };
        Self::new(kind, e)
    }
}

impl From<TaskError> for shmproc_core::Error {
    fn from(e: TaskError) -> Self {
        PoolError::Task(e).into()
    }
}
