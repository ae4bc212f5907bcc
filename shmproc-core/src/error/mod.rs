//! The errors of `shmproc-core`, one enum per operation family. Each message says
//! what was expected and what was found.

use std::io;

mod channel;
mod top;

pub use channel::{Fault, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
pub use top::{Error, ErrorKind};

/// Creating, attaching or removing a segment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The requested size is zero or larger than the machine can hold.
    #[error("invalid segment size {requested}: {reason}")]
    InvalidSize {
        /// Bytes asked for.
        requested: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The payload type cannot live in a segment.
    #[error("type {name} cannot live in a segment: {reason}")]
    UnsupportedType {
        /// The type.
        name: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A segment name is not acceptable.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A named segment of that name exists already.
    #[error("a segment named {name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// No named segment of that name exists.
    #[error("no segment named {name:?}")]
    NotFound {
        /// The name.
        name: String,
    },
    /// The object is shorter than a header.
    #[error("segment too short: {len} bytes, a header alone takes {min}")]
    TooShort {
        /// Its length.
        len: u64,
        /// The least acceptable.
        min: u64,
    },
    /// The object is not an shm segment.
    #[error("not an shm segment: magic {found:#018x}, expected {expected:#018x}")]
    BadMagic {
        /// The first eight bytes found.
        found: u64,
        /// The magic of every shm segment.
        expected: u64,
    },
    /// The segment was made by a build with another header layout.
    #[error("segment layout version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// The version this build understands.
        expected: u32,
        /// The version found.
        found: u32,
    },
    /// The creator has not finished (or died before finishing) the header.
    #[error("segment not initialized: its creator has not finished writing it (or died first)")]
    NotInitialized,
    /// The header's length disagrees with the object's.
    #[error("segment length mismatch: header says {header} bytes, the object has {actual}")]
    LengthMismatch {
        /// Length in the header.
        header: u64,
        /// Length of the object.
        actual: u64,
    },
    /// A header field holds an impossible value.
    #[error("corrupted segment header: field {field} holds {found}")]
    Corrupted {
        /// The field.
        field: &'static str,
        /// Its value.
        found: u64,
    },
    /// The segment holds another type than the one asked for.
    #[error("segment type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// What the caller asked for.
        expected: String,
        /// What the header says.
        found: String,
    },
    /// The payload does not fit the element type.
    #[error("segment payload of {len} bytes is not a whole number of {elem_size}-byte elements")]
    BadPayload {
        /// Payload bytes.
        len: u64,
        /// Element size.
        elem_size: u64,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl SegmentError {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { op, source }
    }
}

/// An index or range lies outside an array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index out of range: {start}..{end} in an array of {len}")]
pub struct OutOfBounds {
    /// First index asked for.
    pub start: usize,
    /// One past the last index asked for.
    pub end: usize,
    /// The array's length.
    pub len: usize,
}

/// Moving an object to another process failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The arguments could not be serialised.
    #[error("cannot serialise the arguments: {0}")]
    Encode(String),
    /// The arguments could not be deserialised.
    #[error("cannot deserialise the arguments: {0}")]
    Decode(String),
    /// A shared object among the arguments failed to attach: its segment
    /// is damaged, of another type, or not a segment at all.
    #[error("a shared object among the arguments cannot be attached: {0}")]
    Object(#[source] SegmentError),
    /// More shared objects than one message can carry.
    #[error("too many shared objects in one message: {count}, at most {max}")]
    TooManyObjects {
        /// Objects found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Passing descriptors failed.
    #[error("passing descriptors failed: {0}")]
    Io(#[from] io::Error),
}

/// A start method was chosen twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the start method is already set to {current:?}; pass force = true to change it")]
pub struct ContextError {
    /// The method in force.
    pub current: crate::start_method::StartMethod,
}

/// A spawned or forkserver child could not run its target. Reported to the
/// parent by [`ProcessError::Bootstrap`] at `join`, and on the child's stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The child never called `shmproc::init()`.
    #[error(
        "the child process never ran its target: `main` must call `shmproc::init()` as its first statement \
         (spawn and forkserver start the program again and init() dispatches to the target)"
    )]
    MissingInit,
    /// The child runs another executable file than its parent.
    #[error("the child runs another executable than its parent (parent {parent:?}, child {child:?}: (device, inode))")]
    NotSameExecutable {
        /// The parent's `(device, inode)`.
        parent: (u64, u64),
        /// The child's.
        child: (u64, u64),
    },
    /// The target named by the parent is not code of this executable.
    #[error(
        "no such target in the child: code offset {offset:#x} is outside this executable's code (size {code_len:#x})"
    )]
    NoSuchTarget {
        /// The offset received.
        offset: u64,
        /// Length of the code.
        code_len: u64,
    },
    /// The bootstrap message was malformed.
    #[error("malformed bootstrap message: {0}")]
    BadMessage(String),
    /// The arguments did not deserialise in the child (the detail is the
    /// deserialiser's).
    #[error("its arguments are malformed: {0}")]
    Arguments(String),
    /// A shared object among the arguments did not attach in the child (the
    /// detail is the segment's error: bad magic, wrong type, ...).
    #[error("a shared object among its arguments cannot be attached: {0}")]
    Object(String),
}

/// An operation on a [`Process`](crate::Process) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `start` was called twice.
    #[error("process {name} was already started; a process can be started once")]
    AlreadyStarted {
        /// Its name.
        name: String,
    },
    /// The operation needs a started process.
    #[error("process {name} has not been started")]
    NotStarted {
        /// Its name.
        name: String,
    },
    /// A process tried to join itself.
    #[error("a process cannot join itself")]
    JoinSelf,
    /// Only the process that started a child may join or signal it.
    #[error("process {name} is a child of pid {parent}, not of this process (pid {me})")]
    NotOurChild {
        /// Its name.
        name: String,
        /// Its parent.
        parent: u32,
        /// The caller.
        me: u32,
    },
    /// Daemonic processes may not start children (as in Python).
    #[error("daemonic processes are not allowed to have children")]
    DaemonCannotHaveChildren,
    /// A setting may only change before `start`.
    #[error("cannot change {what} of process {name} after it started")]
    AlreadyRunning {
        /// Which setting.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Fork was chosen in a process that runs more than one thread: the
    /// child would hold only the forking thread and could deadlock on a lock
    /// another thread held (the allocator's, stdout's, any mutex).
    #[error(
        "cannot start {name} by fork: this process runs {threads} threads, and a fork child of a \
         multi-threaded process may deadlock; use the spawn or forkserver start method (a closure target \
         needs fork: start it before any thread, or pass a fn with serde arguments to Process::new)"
    )]
    ForkWithThreads {
        /// The child's name.
        name: String,
        /// Threads counted in this process.
        threads: usize,
    },
    /// Closures cannot be sent to a new program; they need fork.
    #[error("a closure target needs the fork start method (spawn and forkserver take fn targets with serde arguments)")]
    ClosureNeedsFork,
    /// `shmproc::init()` was not called where it is required.
    #[error("{0}")]
    NotInitialized(&'static str),
    /// The child could not run its target.
    #[error("child {name} could not run its target: {source}")]
    Bootstrap {
        /// The child's name.
        name: String,
        /// What went wrong in it.
        #[source]
        source: BootstrapError,
    },
    /// The child's exit status could not be learnt.
    #[error("the exit status of {name} was lost: {why}")]
    StatusLost {
        /// The child's name.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// The arguments could not be moved to the child.
    #[error(transparent)]
    Handle(#[from] HandleError),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { op, source }
    }
}
