//! [`Queue`]: the handle users hold, its forms of put and get, and how it
//! crosses to another process; the mapped layout and the algorithm are in
//! `shared`.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::sys::Deadline;
use shmproc_core::{SegmentError, SegmentKind, TypeIdentity};

use shmproc_core::{Fault, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};

use crate::bytes::Fail;

use super::DEFAULT_CAPACITY;
use super::shared::{Payload, QueueShared};

/// The object corruption reports name.
const OBJECT: &str = "queue";

thread_local! {
    /// Serialised bytes of the item being put (reused between calls).
    static OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// Bytes of the message being got.
    static IN: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A multi-producer multi-consumer queue of serde messages in shared
/// memory (Python's `multiprocessing.Queue`).
///
/// Clones are the same queue; so is a child's copy passed as an argument.
/// `maxsize` bounds the number of items (0: unbounded, as in Python); the
/// ring's bytes bound them too ([`DEFAULT_CAPACITY`], or
/// [`Queue::with_capacity`]); an item larger than half the ring is streamed
/// through it in parts.
///
/// # Examples
///
/// ```
/// use shmproc_collections::queue::Queue;
/// use shmproc_core::{RecvError, TryRecvError, TrySendError};
///
/// let q = Queue::<String>::new(2)?;
/// q.put("a".into())?;
/// q.try_put("b".into())?;
/// assert!(matches!(q.try_put("c".into()), Err(TrySendError::Full(c)) if c == "c"));
/// assert_eq!(q.qsize(), 2);
/// assert_eq!(q.get()?, "a");
/// assert_eq!(q.try_get()?, "b");
/// assert_eq!(q.try_get(), Err(TryRecvError::Empty));
/// q.close();
/// assert!(q.put("d".into()).unwrap_err().is_disconnected());
/// assert_eq!(q.get(), Err(RecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    pub(super) shared: Arc<QueueShared>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.shared.qsize())
            .field("maxsize", &self.shared.maxsize())
            .field("capacity", &self.shared.raw.capacity())
            .finish()
    }
}

fn ser<T: Serialize>(item: &T) -> Result<Vec<u8>, Fail> {
    let mut buf = OUT.take();
    buf.clear();
    postcard::to_extend(item, buf).map_err(|e| Fail::fault(Fault::Encode(e.to_string())))
}

/// Deserialises a whole message: bytes left over mean another type.
pub(crate) fn de<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Fault> {
    match postcard::take_from_bytes(bytes) {
        Ok((item, [])) => Ok(item),
        Ok((_, rest)) => Err(Fault::Decode(format!("{} bytes left over", rest.len()))),
        // A shared object among the message that could not be opened says
        // why (postcard keeps no message of its own).
        Err(e) => Err(Fault::Decode(
            shmproc_core::handle::take_plain_cause().unwrap_or_else(|| e.to_string()),
        )),
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    pub(super) fn identity() -> TypeIdentity {
        TypeIdentity::of::<T>(SegmentKind::QUEUE)
    }

    /// A new empty queue holding at most `maxsize` items (0: no limit but
    /// the ring's [`DEFAULT_CAPACITY`] bytes).
    ///
    /// # Errors
    ///
    /// [`SegmentError`] if the segment cannot be made, or `maxsize` is 2^31
    /// or more.
    pub fn new(maxsize: usize) -> Result<Self, SegmentError> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new queue whose ring holds `bytes` bytes (rounded up to a power of
    /// two).
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`], and for a zero or too large `bytes`.
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Self, SegmentError> {
        Self::make(None, maxsize, bytes, false)
    }

    /// A new empty queue as [`Queue::new`], in a named segment that any
    /// process (not only our children) can open with [`Queue::open`].
    /// The name stays until [`Segment::unlink`](shmproc_core::Segment::unlink)
    /// (the segment itself lives while a process maps it).
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`], and [`SegmentError::InvalidName`],
    /// [`SegmentError::AlreadyExists`].
    pub fn create_named(name: &str, maxsize: usize) -> Result<Self, SegmentError> {
        Self::make(Some(name), maxsize, DEFAULT_CAPACITY, false)
    }

    /// Opens the queue named `name` (made by [`Queue::create_named`] or
    /// [`JoinableQueue::create_named`](super::JoinableQueue::create_named)), checking that it holds `T`s and
    /// that its headers are sound.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotFound`], [`SegmentError::TypeMismatch`] (naming
    /// both types) for a queue of another item type or another object,
    /// [`SegmentError::BadPayload`] for impossible headers.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            shared: Arc::new(QueueShared::open(name, &Self::identity())?),
            _t: PhantomData,
        })
    }

    pub(super) fn make(name: Option<&str>, maxsize: usize, bytes: usize, joinable: bool) -> Result<Self, SegmentError> {
        let shared = QueueShared::create(name, &Self::identity(), maxsize, bytes, joinable)?;
        shared.register();
        Ok(Self {
            shared: Arc::new(shared),
            _t: PhantomData,
        })
    }

    fn put_until(&self, item: T, deadline: Option<Deadline>) -> Result<(), (T, Fail)> {
        // Small items are serialised straight into the ring (postcard's
        // slice writer is also several times faster than its Vec one).
        let mut in_place = |room: &mut [u8]| postcard::to_slice(&item, room).ok().map(|b| b.len());
        match self.shared.put_bytes(Payload::InPlace(&mut in_place), deadline) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err((item, e.of(OBJECT))),
        }
        let bytes = match ser(&item) {
            Ok(b) => b,
            Err(e) => return Err((item, e)),
        };
        let result = self.shared.put_bytes(Payload::Bytes(&bytes), deadline);
        OUT.set(bytes);
        result.map(drop).map_err(|e| (item, e.of(OBJECT)))
    }

    /// Puts an item, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the queue is closed, or full and
    /// every other process using it died; [`SendError::Fault`] with
    /// [`Fault::Encode`] (nothing sent) or [`Fault::Corrupted`]. The item
    /// is handed back.
    pub fn put(&self, item: T) -> Result<(), SendError<T>> {
        self.put_until(item, None).map_err(|(v, e)| e.send(v))
    }

    /// Puts an item, waiting for room up to `timeout` (an item streamed in
    /// parts, once started, is finished).
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (Python's `queue.Full`), as for
    /// [`Queue::put`] otherwise.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.put_until(item, Some(Deadline::after(timeout)))
            .map_err(|(v, e)| e.send_timeout(v, timeout))
    }

    /// Puts an item if there is room now, without waiting at all (Python's
    /// `put_nowait`); a put another process is making at this instant
    /// holds the put lock, and then this one reports `Full` too.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`], as for [`Queue::put`] otherwise.
    pub fn try_put(&self, item: T) -> Result<(), TrySendError<T>> {
        self.put_until(item, Some(Deadline::after(Duration::ZERO)))
            .map_err(|(v, e)| e.try_send(v))
    }

    fn get_until(&self, deadline: Option<Deadline>) -> Result<T, Fail> {
        let mut buf = IN.take();
        let result = self
            .shared
            .get_with(&mut buf, deadline, |b| de::<T>(b).map_err(Fail::fault));
        IN.set(buf);
        result.map_err(|e| e.of(OBJECT))
    }

    /// Gets the oldest item, waiting as long as needed.
    ///
    /// The message is copied and deserialised before it is taken off the
    /// queue: a process killed inside `get` leaves it to another consumer,
    /// unless the kill comes in the return itself (or, for a message larger
    /// than half the ring, while its parts are read).
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the queue is closed and drained,
    /// or when it is empty and every other process using it died;
    /// [`RecvError::Fault`] with [`Fault::Decode`] (that message is gone)
    /// or [`Fault::Corrupted`].
    pub fn get(&self) -> Result<T, RecvError> {
        self.get_until(None).map_err(Fail::recv)
    }

    /// Gets an item, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] (Python's `queue.Empty`), as for
    /// [`Queue::get`] otherwise.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.get_until(Some(Deadline::after(timeout)))
            .map_err(|e| e.recv_timeout(timeout))
    }

    /// Gets an item if one is there now, without waiting at all (Python's
    /// `get_nowait`); a get another process is making at this instant
    /// holds the get lock, and then this one reports `Empty` too.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], as for [`Queue::get`] otherwise.
    pub fn try_get(&self) -> Result<T, TryRecvError> {
        self.get_until(Some(Deadline::after(Duration::ZERO)))
            .map_err(Fail::try_recv)
    }

    /// Items in the queue (a snapshot: others may be putting and getting).
    pub fn qsize(&self) -> usize {
        self.shared.qsize() as usize
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn empty(&self) -> bool {
        self.shared.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot; never for an
    /// unbounded queue).
    pub fn full(&self) -> bool {
        let max = self.shared.maxsize();
        max != 0 && self.shared.qsize() >= max
    }

    /// The item limit (0: none).
    pub fn maxsize(&self) -> usize {
        self.shared.maxsize() as usize
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.raw.capacity() as usize
    }

    /// Closes the queue for every process: later puts fail with
    /// `Disconnected`; gets drain what is left, then fail with it.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed()
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = QueueShared::deserialize(deserializer, &Self::identity())?;
        Ok(Self {
            shared: Arc::new(shared),
            _t: PhantomData,
        })
    }
}
