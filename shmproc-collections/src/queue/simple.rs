//! Python's `SimpleQueue`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::{
    RecvError, RecvTimeoutError, SegmentError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use std::time::Duration;

use super::Queue;

/// An unbounded queue with only `put`, `get`, `empty` and `close` (Python's
/// `multiprocessing.SimpleQueue`).
///
/// # Examples
///
/// ```
/// let q = shmproc_collections::queue::SimpleQueue::<(u8, String)>::new()?;
/// q.put((1, "one".into())).expect("room");
/// assert!(!q.empty());
/// assert_eq!(q.get()?, (1, "one".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.queue).finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new empty queue.
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made.
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self { queue: Queue::new(0)? })
    }

    /// A new queue in a named segment (see [`Queue::create_named`]).
    ///
    /// # Errors
    ///
    /// As for [`Queue::create_named`].
    pub fn create_named(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            queue: Queue::create_named(name, 0)?,
        })
    }

    /// Opens the queue named `name` (see [`Queue::open`]).
    ///
    /// # Errors
    ///
    /// As for [`Queue::open`].
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            queue: Queue::open(name)?,
        })
    }

    /// Puts an item, waiting for room in the ring if needed.
    ///
    /// # Errors
    ///
    /// As for [`Queue::put`].
    pub fn put(&self, item: T) -> Result<(), SendError<T>> {
        self.queue.put(item)
    }

    /// Puts an item if there is room in the ring now, without waiting.
    ///
    /// # Errors
    ///
    /// As for [`Queue::try_put`].
    pub fn try_put(&self, item: T) -> Result<(), TrySendError<T>> {
        self.queue.try_put(item)
    }

    /// Puts an item, waiting for room up to `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`Queue::put_timeout`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.queue.put_timeout(item, timeout)
    }

    /// Gets the oldest item, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// As for [`Queue::get`].
    pub fn get(&self) -> Result<T, RecvError> {
        self.queue.get()
    }

    /// Gets an item if one is there now, without waiting.
    ///
    /// # Errors
    ///
    /// As for [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T, TryRecvError> {
        self.queue.try_get()
    }

    /// Gets an item, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.queue.get_timeout(timeout)
    }

    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes the queue (see [`Queue::close`]).
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            queue: Queue::deserialize(deserializer)?,
        })
    }
}
