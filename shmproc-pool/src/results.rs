//! What the asynchronous calls return: [`AsyncResult`], and the streaming
//! iterators of `imap` and `imap_unordered`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{PoolError, TaskError};
use crate::job::{self, Job, State};

/// Turns a complete job's results into what the caller asked for.
pub(crate) type Decode<T> = fn(&State) -> Result<T, PoolError>;

/// Where an [`AsyncResult`] gets its value: a process pool's job (decoded
/// on each `get`) or a thread pool's (moved out by the first `get`).
pub(crate) trait Source<T>: Send + Sync {
    /// Waits until the call completes or the deadline passes; whether it
    /// completed.
    fn wait_until(&self, deadline: Option<Instant>) -> bool;
    /// Whether it completed, without waiting.
    fn is_ready(&self) -> bool;
    /// The outcome of a completed call.
    fn outcome(&self) -> Result<T, PoolError>;
    /// Whether a completed call succeeded.
    fn succeeded(&self) -> bool;
}

/// A process pool's result: decoded from the job's frames.
pub(crate) struct ProcSource<T> {
    pub(crate) job: Arc<Job>,
    pub(crate) decode: Decode<T>,
}

impl<T> Source<T> for ProcSource<T> {
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        self.job.wait_for(deadline, State::complete).complete()
    }

    fn is_ready(&self) -> bool {
        self.job.lock().complete()
    }

    fn outcome(&self) -> Result<T, PoolError> {
        (self.decode)(&self.job.lock())
    }

    fn succeeded(&self) -> bool {
        (self.decode)(&self.job.lock()).is_ok()
    }
}

/// The result of `apply_async`, `map_async` or `starmap_async`: Python's
/// `AsyncResult`. Waiting spins briefly before it sleeps, so a result that
/// comes within microseconds is taken without a wake-up.
///
/// A process pool's result can be read again; a thread pool's value is
/// moved out by the first successful `get` (a later one returns
/// [`PoolError::Taken`]).
pub struct AsyncResult<T> {
    src: Box<dyn Source<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(src: impl Source<T> + 'static) -> Self {
        Self { src: Box::new(src) }
    }

    /// Waits for the result: the value, or the first task's error in input
    /// order (Python's `get()`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] for a task that failed, [`PoolError::Terminated`]
    /// or [`PoolError::Initializer`] when the pool gave the work up.
    pub fn get(&self) -> Result<T, PoolError> {
        self.src.wait_until(None);
        self.src.outcome()
    }

    /// As [`Self::get`], giving up after `timeout` with
    /// [`PoolError::Timeout`] (Python's `get(timeout)`).
    ///
    /// # Errors
    ///
    /// As [`Self::get`], and [`PoolError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        if !self.src.wait_until(Some(Instant::now() + timeout)) {
            return Err(PoolError::Timeout(timeout));
        }
        self.src.outcome()
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        self.src.wait_until(None);
    }

    /// Waits up to `timeout`; whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.src.wait_until(Some(Instant::now() + timeout))
    }

    /// Whether the call finished (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.src.is_ready()
    }

    /// Whether the call finished without error; `None` while it runs
    /// (where Python raises `ValueError`).
    pub fn successful(&self) -> Option<bool> {
        self.src.is_ready().then(|| self.src.succeeded())
    }
}

pub(crate) fn decode_all<R: DeserializeOwned>(st: &State) -> Result<Vec<R>, PoolError> {
    job::collect(st)
}

pub(crate) fn decode_one<R: DeserializeOwned>(st: &State) -> Result<R, PoolError> {
    let mut v = job::collect::<R>(st)?;
    v.pop().ok_or(PoolError::Terminated)
}

/// Feeds a streaming call: submits up to `n` more tasks, and says how many
/// it did (0 once the input is exhausted).
pub(crate) type Feed<'a> = Box<dyn FnMut(usize) -> Result<usize, PoolError> + 'a>;

/// The iterator of `imap` (in input order) and `imap_unordered` (in
/// completion order). It pulls its input lazily: at most a window of tasks
/// is in flight, so memory is bounded by the window and not by the input,
/// and an endless input works. `size_hint` gives the number of results to
/// come when the input knows its length.
pub struct IMap<'a, R> {
    inner: Box<dyn Iterator<Item = Result<R, PoolError>> + 'a>,
}

impl<R> fmt::Debug for IMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("size_hint", &self.inner.size_hint())
            .finish()
    }
}

impl<'a, R> IMap<'a, R> {
    pub(crate) fn new(inner: impl Iterator<Item = Result<R, PoolError>> + 'a) -> Self {
        Self { inner: Box::new(inner) }
    }
}

impl<R> Iterator for IMap<'_, R> {
    type Item = Result<R, PoolError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The streaming iterator of either pool: its batches are `F`.
pub(crate) struct ProcIMap<'a, R, F = job::Frame> {
    job: Arc<Job<F>>,
    feed: Feed<'a>,
    exhausted: bool,
    window: usize,
    ordered: bool,
    next: usize,
    submitted: usize,
    yielded: usize,
    len: Option<usize>,
    by_index: BTreeMap<usize, Result<R, TaskError>>,
    arrived: VecDeque<Result<R, TaskError>>,
    gave_up: bool,
    _r: PhantomData<fn() -> R>,
}

impl<R, F> fmt::Debug for ProcIMap<'_, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcIMap")
            .field("ordered", &self.ordered)
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl<'a, R, F: job::Unpack<R>> ProcIMap<'a, R, F> {
    pub(crate) fn new(job: Arc<Job<F>>, feed: Feed<'a>, window: usize, ordered: bool, len: Option<usize>) -> Self {
        Self {
            job,
            feed,
            exhausted: false,
            window: window.max(1),
            ordered,
            next: 0,
            submitted: 0,
            yielded: 0,
            len,
            by_index: BTreeMap::new(),
            arrived: VecDeque::new(),
            gave_up: false,
            _r: PhantomData,
        }
    }

    /// Keeps the window full (the call submits its first window at once,
    /// as Python's `imap` starts on its input before the first `next`).
    pub(crate) fn top_up(&mut self) -> Result<(), PoolError> {
        while !self.exhausted && self.submitted - self.yielded < self.window {
            let room = self.window - (self.submitted - self.yielded);
            let n = (self.feed)(room)?;
            if n == 0 {
                self.exhausted = true;
            }
            self.submitted += n;
        }
        Ok(())
    }

    fn take_ready(&mut self) -> Option<Result<R, PoolError>> {
        if self.ordered {
            let r = self.by_index.remove(&self.next)?;
            self.next += 1;
            Some(r.map_err(PoolError::Task))
        } else {
            self.arrived.pop_front().map(|r| r.map_err(PoolError::Task))
        }
    }
}

impl<R, F: job::Unpack<R>> Iterator for ProcIMap<'_, R, F> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.gave_up {
            return None;
        }
        if let Err(e) = self.top_up() {
            self.gave_up = true;
            return Some(Err(e));
        }
        loop {
            if let Some(r) = self.take_ready() {
                self.yielded += 1;
                if let Err(e) = self.top_up() {
                    self.gave_up = true;
                    return Some(Err(e));
                }
                return Some(r);
            }
            if self.exhausted && self.yielded >= self.submitted {
                return None;
            }
            let mut st = self
                .job
                .wait_for(None, |st| !st.frames.is_empty() || st.aborted.is_some());
            if st.frames.is_empty()
                && let Some(a) = &st.aborted
            {
                self.gave_up = true;
                return Some(Err(a.error()));
            }
            let frames = std::mem::take(&mut st.frames);
            drop(st);
            for f in frames {
                f.unpack(&mut |index, r| {
                    if self.ordered {
                        self.by_index.insert(index, r);
                    } else {
                        self.arrived.push_back(r);
                    }
                });
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.len {
            Some(n) => {
                let left = n.saturating_sub(self.yielded);
                (left, Some(left))
            }
            None => (0, None),
        }
    }
}
