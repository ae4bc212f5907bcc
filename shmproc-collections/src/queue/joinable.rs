//! Python's `JoinableQueue`: a [`Queue`] that counts unfinished tasks.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::SegmentError;
use shmproc_core::sys::Deadline;

use super::{DEFAULT_CAPACITY, Queue, TaskDoneError};

/// A [`Queue`] that counts unfinished tasks (Python's
/// `multiprocessing.JoinableQueue`): every put adds one, every
/// [`task_done`](Self::task_done) takes one, and [`join`](Self::join) waits
/// for none. Derefs to the [`Queue`] for put and get.
///
/// # Examples
///
/// ```
/// let q = shmproc_collections::queue::JoinableQueue::<u32>::new(0)?;
/// q.put(1).expect("room");
/// assert!(!q.join_timeout(std::time::Duration::from_millis(1)));
/// assert_eq!(q.get()?, 1);
/// q.task_done()?;
/// q.join();
/// assert!(q.task_done().is_err(), "one put, one task_done");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a snapshot for display.
        let unfinished = self.queue.shared.header().unfinished.load(Relaxed);
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &unfinished)
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A new joinable queue (see [`Queue::new`]).
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`].
    pub fn new(maxsize: usize) -> Result<Self, SegmentError> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new joinable queue whose ring holds `bytes` bytes.
    ///
    /// # Errors
    ///
    /// As for [`Queue::with_capacity`].
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            queue: Queue::make(None, maxsize, bytes, true)?,
        })
    }

    /// A new joinable queue in a named segment (see [`Queue::create_named`]).
    ///
    /// # Errors
    ///
    /// As for [`Queue::create_named`].
    pub fn create_named(name: &str, maxsize: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            queue: Queue::make(Some(name), maxsize, DEFAULT_CAPACITY, true)?,
        })
    }

    /// Opens the joinable queue named `name`.
    ///
    /// # Errors
    ///
    /// As for [`Queue::open`], and [`SegmentError::TypeMismatch`] for a
    /// queue that is not joinable.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        let queue = Queue::open(name)?;
        if !queue.shared.joinable() {
            return Err(SegmentError::TypeMismatch {
                expected: format!("JoinableQueue<{}>", std::any::type_name::<T>()),
                found: format!("Queue<{}> (not joinable)", std::any::type_name::<T>()),
            });
        }
        Ok(Self { queue })
    }

    /// Says that a task taken from the queue is finished.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] when called more times than items were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        self.queue.shared.task_done()
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) {
        self.queue.shared.join_until(None);
    }

    /// Waits up to `timeout`; true when every item was marked done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.queue.shared.join_until(Some(Deadline::after(timeout)))
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        // Relaxed: a snapshot.
        self.queue.shared.header().unfinished.load(Relaxed) as usize
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let queue = Queue::deserialize(deserializer)?;
        if !queue.shared.joinable() {
            return Err(serde::de::Error::custom("the queue received is not joinable"));
        }
        Ok(Self { queue })
    }
}
