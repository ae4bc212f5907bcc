//! What the manager's containers and served objects report.

/// Why a container or served-object operation failed. The container stays
/// usable after every one of these, and nothing already stored is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// Reading or removing a key the dict does not hold (Python's
    /// `KeyError`).
    #[error("no such key: {key}")]
    KeyNotFound {
        /// The key, as `Debug` shows it.
        key: String,
    },
    /// Reading or deleting an attribute the namespace does not hold
    /// (Python's `AttributeError`).
    #[error("the namespace has no attribute {name:?}")]
    NoAttribute {
        /// The attribute's name.
        name: String,
    },
    /// An index past the end of a list (Python's `IndexError`).
    #[error("list index {index} out of range for a list of {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The list's length at the time.
        len: usize,
    },
    /// `remove` or `index` of a value the list does not hold (Python's
    /// `ValueError`).
    #[error("the value is not in the list")]
    NotInList,
    /// A key or value that does not serialise, or stored bytes that do not
    /// deserialise as the type asked for.
    #[error("{what} does not (de)serialise: {reason}")]
    Serialization {
        /// Which: "key", "value", "attribute", "argument", ...
        what: &'static str,
        /// The serialiser's message.
        reason: String,
    },
    /// A key or value larger than one allocation of the store can hold.
    #[error("{what} of {len} bytes is larger than the largest allocation ({max} bytes)")]
    TooLarge {
        /// Which: "key", "value", "table", ...
        what: &'static str,
        /// Its length.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// One operation would change more words in place than the undo log
    /// holds (a bulk operation built fresh blocks instead would not); the
    /// operation was rolled back.
    #[error("the operation changes more than {cap} words in place; it was rolled back")]
    LogFull {
        /// The log's capacity in records.
        cap: u64,
    },
    /// A word of the container's segment holds what no writer of this
    /// library writes: a peer scribbled on it. What was read is named.
    #[error("the container's shared memory is corrupted: {what} holds {found:#x}")]
    Corrupted {
        /// What was read.
        what: &'static str,
        /// The value found.
        found: u64,
    },
    /// Creating, attaching or growing the container's segment failed.
    #[error("the container's segment: {0}")]
    Segment(#[from] shmproc_core::SegmentError),
    /// A served object has no method (or attribute) of that name.
    #[error("{type_name} has no method {method:?}")]
    NoMethod {
        /// The served type.
        type_name: String,
        /// The name asked for.
        method: String,
    },
    /// A served object's method panicked or returned an error.
    #[error("{type_name}.{method} failed: {message}")]
    MethodFailed {
        /// The served type.
        type_name: String,
        /// The method.
        method: String,
        /// The panic's or error's message.
        message: String,
    },
    /// The manager process serving an object died (or was shut down); the
    /// objects it owned are gone with it.
    #[error("the manager process {pid} is gone ({why}); the objects it served are lost")]
    ManagerGone {
        /// Its pid.
        pid: u32,
        /// How it ended, or why it cannot be reached.
        why: String,
    },
    /// Starting or talking to the manager process failed.
    #[error("the manager process: {0}")]
    Process(String),
}

impl ManagerError {
    pub(crate) fn corrupted(what: &'static str, found: u64) -> Self {
        Self::Corrupted { what, found }
    }

    pub(crate) fn encode(what: &'static str, e: &postcard::Error) -> Self {
        Self::Serialization {
            what,
            reason: e.to_string(),
        }
    }
}

impl From<ManagerError> for shmproc_core::Error {
    fn from(e: ManagerError) -> Self {
        use shmproc_core::ErrorKind;
        let kind = match &e {
            ManagerError::KeyNotFound { .. }
            | ManagerError::NoAttribute { .. }
            | ManagerError::IndexOutOfRange { .. }
            | ManagerError::NotInList
            | ManagerError::NoMethod { .. } => ErrorKind::Usage,
            ManagerError::Serialization { .. } => ErrorKind::Serialization,
            ManagerError::TooLarge { .. } | ManagerError::LogFull { .. } => ErrorKind::TooLarge,
            ManagerError::Corrupted { .. } => ErrorKind::Corrupted,
            ManagerError::Segment(_) => ErrorKind::Segment,
            ManagerError::MethodFailed { .. } => ErrorKind::Other,
            ManagerError::ManagerGone { .. } => ErrorKind::Disconnected,
            ManagerError::Process(_) => ErrorKind::Process,
        };
        Self::new(kind, e)
    }
}
