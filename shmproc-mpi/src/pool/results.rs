//! What a [`DistPool`](super::DistPool)'s calls return: the streaming
//! iterator of `imap`/`imap_unordered`, and the async result of
//! `apply_async`/`map_async`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::{Chunk, DistPool, Done, Outcome};
use crate::world::MpiError;

/// A chunk's encoded per-item outcomes, decoded (its first item is item
/// `first` of the call); a chunk that failed as a whole (a node refused
/// it, it did not decode) fails each of its `len` items.
fn decode_chunk<R: DeserializeOwned>(
    first: usize,
    len: usize,
    got: Result<Vec<u8>, MpiError>,
) -> Vec<Result<R, MpiError>> {
    match got.and_then(|b| postcard::from_bytes::<Vec<Outcome<R>>>(&b).map_err(|e| MpiError::Message(e.to_string()))) {
        Ok(v) if v.len() == len => v
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.map_err(|why| MpiError::Task { index: first + i, why }))
            .collect(),
        Ok(v) => (0..len)
            .map(|_| {
                Err(MpiError::Message(format!(
                    "a chunk of {len} tasks came back with {} results",
                    v.len()
                )))
            })
            .collect(),
        Err(e) => {
            let why = e.to_string();
            let mut out = vec![Err(e)];
            out.extend((1..len).map(|_| Err(MpiError::Message(why.clone()))));
            out
        }
    }
}

/// The iterator of [`DistPool::imap`] (input order) and
/// [`DistPool::imap_unordered`] (completion order). It reads its input
/// lazily: at most a window of chunks (two per worker of the job) is in
/// flight or waiting to be yielded, so memory is bounded by the window and
/// not by the input, and an endless input works. `size_hint` gives the
/// number of results to come when the input knows its length.
pub struct DistIMap<'a, R> {
    pool: &'a DistPool,
    /// Encoded chunks of the input, with their lengths.
    chunks: Box<dyn Iterator<Item = Chunk> + 'a>,
    ordered: bool,
    window: usize,
    /// Chunks handed out, and yielded (wholly moved to `ready`).
    issued: usize,
    yielded: usize,
    /// Each chunk in flight: its first item's index and its length.
    lens: BTreeMap<usize, (usize, usize)>,
    /// Items handed out so far.
    items: usize,
    /// Chunks that came back before their turn (ordered).
    early: BTreeMap<usize, Result<Vec<u8>, MpiError>>,
    ready: VecDeque<Result<R, MpiError>>,
    done_tx: mpsc::Sender<Done>,
    done: mpsc::Receiver<Done>,
    /// Results still to come, when the input said.
    remaining: Option<usize>,
}

impl<R> fmt::Debug for DistIMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistIMap")
            .field("ordered", &self.ordered)
            .field("in_flight", &(self.issued - self.yielded))
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<'a, R: DeserializeOwned> DistIMap<'a, R> {
    pub(super) fn new(
        pool: &'a DistPool,
        chunks: Box<dyn Iterator<Item = Chunk> + 'a>,
        ordered: bool,
        remaining: Option<usize>,
    ) -> Self {
        let (done_tx, done) = mpsc::channel();
        Self {
            pool,
            chunks,
            ordered,
            window: 2 * pool.workers(),
            issued: 0,
            yielded: 0,
            lens: BTreeMap::new(),
            items: 0,
            early: BTreeMap::new(),
            ready: VecDeque::new(),
            done_tx,
            done,
            remaining,
        }
    }

    /// Hands out chunks until the window is full or the input ends.
    fn fill(&mut self) {
        while self.issued - self.yielded < self.window {
            let Some((len, body)) = self.chunks.next() else { return };
            let k = self.issued;
            self.issued += 1;
            self.lens.insert(k, (self.items, len));
            self.items += len;
            let sent = body.and_then(|b| self.pool.submit(k, b, &self.done_tx));
            if let Err(e) = sent {
                // Its outcome is the error, in its turn.
                let _ = self.done_tx.send((k, Err(e)));
            }
        }
    }

    /// Moves chunk `k`'s results to `ready`.
    fn take(&mut self, k: usize, got: Result<Vec<u8>, MpiError>) {
        let (first, len) = self.lens.remove(&k).unwrap_or((0, 0));
        self.ready.extend(decode_chunk::<R>(first, len, got));
        self.yielded += 1;
    }
}

impl<R: DeserializeOwned> Iterator for DistIMap<'_, R> {
    type Item = Result<R, MpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                self.remaining = self.remaining.map(|n| n.saturating_sub(1));
                return Some(r);
            }
            self.fill();
            if self.issued == self.yielded {
                return None;
            }
            if self.ordered
                && let Some(got) = self.early.remove(&self.yielded)
            {
                self.take(self.yielded, got);
                continue;
            }
            // The lanes send every chunk's outcome, and this holds a
            // sender: the channel cannot close while one is due.
            let Ok((k, got)) = self.done.recv() else {
                return Some(Err(MpiError::Message("the pool's lanes have stopped".into())));
            };
            if self.ordered && k != self.yielded {
                self.early.insert(k, got);
            } else {
                self.take(k, got);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.remaining {
            Some(n) => (n, Some(n)),
            None => (self.ready.len(), None),
        }
    }
}

/// How an async result turns its chunks' bytes into its value.
pub(super) type Decode<T> = fn(Vec<Chunk>) -> Result<T, MpiError>;

/// The chunks gathered so far.
struct Gather {
    done: mpsc::Receiver<Done>,
    got: Vec<Option<Result<Vec<u8>, String>>>,
    lens: Vec<usize>,
    missing: usize,
}

/// The result of [`DistPool::apply_async`], [`DistPool::map_async`] and
/// [`DistPool::starmap_async`]: Python's `AsyncResult` (`get`,
/// `get_timeout`, `wait`, `ready`, `successful`). It can be read again.
pub struct DistAsyncResult<T> {
    gather: Mutex<Gather>,
    decode: Decode<T>,
}

impl<T> fmt::Debug for DistAsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistAsyncResult").field("ready", &self.ready()).finish()
    }
}

impl<T> DistAsyncResult<T> {
    pub(super) fn new(done: mpsc::Receiver<Done>, lens: Vec<usize>, decode: Decode<T>) -> Self {
        let n = lens.len();
        Self {
            gather: Mutex::new(Gather {
                done,
                got: (0..n).map(|_| None).collect(),
                lens,
                missing: n,
            }),
            decode,
        }
    }

    /// Waits until every chunk came back or `deadline` passed; whether
    /// every chunk did.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut g = self.gather.lock().unwrap_or_else(PoisonError::into_inner);
        while g.missing > 0 {
            let next = match deadline {
                None => g.done.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(d) => g.done.recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            match next {
                Ok((k, r)) => {
                    if let Some(slot) = g.got.get_mut(k)
                        && slot.is_none()
                    {
                        *slot = Some(r.map_err(|e| e.to_string()));
                        g.missing -= 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The lanes stopped: what is missing failed.
                    for slot in g.got.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(Err("the pool's lanes have stopped".into()));
                    }
                    g.missing = 0;
                }
            }
        }
        true
    }

    /// The value once every chunk came back.
    fn outcome(&self) -> Result<T, MpiError> {
        let g = self.gather.lock().unwrap_or_else(PoisonError::into_inner);
        let chunks = g
            .got
            .iter()
            .zip(&g.lens)
            .map(|(slot, &len)| {
                let r = match slot {
                    Some(Ok(b)) => Ok(b.clone()),
                    Some(Err(why)) => Err(MpiError::Message(why.clone())),
                    None => Err(MpiError::Message("a chunk is missing".into())),
                };
                (len, r)
            })
            .collect();
        (self.decode)(chunks)
    }

    /// Waits for the result: the value, or the first task's error in input
    /// order (Python's `get()`).
    ///
    /// # Errors
    ///
    /// [`MpiError::Task`] for a task that failed, or why its chunk could
    /// not run.
    pub fn get(&self) -> Result<T, MpiError> {
        self.wait_until(None);
        self.outcome()
    }

    /// As [`Self::get`], giving up after `timeout` with
    /// [`MpiError::Timeout`] (Python's `get(timeout)`).
    ///
    /// # Errors
    ///
    /// As [`Self::get`], and [`MpiError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, MpiError> {
        if !self.wait_until(Some(Instant::now() + timeout)) {
            return Err(MpiError::Timeout(timeout));
        }
        self.outcome()
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits up to `timeout`; whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Whether the call finished (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.wait_until(Some(Instant::now()))
    }

    /// Whether the call finished without error; `None` while it runs.
    pub fn successful(&self) -> Option<bool> {
        self.ready().then(|| self.outcome().is_ok())
    }
}

/// Every item of every chunk, in input order; the first error if any.
pub(super) fn decode_all<R: DeserializeOwned>(chunks: Vec<Chunk>) -> Result<Vec<R>, MpiError> {
    let mut first = 0;
    chunks
        .into_iter()
        .flat_map(|(len, got)| {
            first += len;
            decode_chunk::<R>(first - len, len, got)
        })
        .collect()
}

/// The one item of the one chunk.
pub(super) fn decode_one<R: DeserializeOwned>(chunks: Vec<Chunk>) -> Result<R, MpiError> {
    decode_all::<R>(chunks)?
        .pop()
        .ok_or_else(|| MpiError::Message("no result came back".into()))
}
