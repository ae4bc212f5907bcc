//! A call's results as they arrive: the driver thread delivers result
//! frames into the call's `Job`; the caller's thread waits on it (spinning
//! briefly, then sleeping) and decodes them.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{PoolError, TaskError, TaskFailure};

/// The results of tasks `first .. first + n` of a call, as one worker sent
/// them (or as the driver made them for tasks no worker finished).
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) first: usize,
    pub(crate) n: usize,
    pub(crate) worker: Arc<str>,
    /// `n` postcard `Result<R, TaskFailure>`, from `skip` on (the frame as
    /// it came off the ring, its head left in place: no copy).
    pub(crate) bytes: Vec<u8>,
    pub(crate) skip: usize,
}

impl Frame {
    /// Decodes the results, calling `each(index, result)` in order. Bytes
    /// that do not decode fail the rest of the frame's tasks.
    pub(crate) fn decode<R: DeserializeOwned>(&self, mut each: impl FnMut(usize, Result<R, TaskError>)) {
        let mut rest = self.bytes.get(self.skip..).unwrap_or_default();
        for i in 0..self.n {
            let index = self.first + i;
            let failed = |failure| TaskError {
                index,
                worker: self.worker.to_string(),
                failure,
            };
            match postcard::take_from_bytes::<Result<R, TaskFailure>>(rest) {
                Ok((r, tail)) => {
                    rest = tail;
                    each(index, r.map_err(failed));
                }
                Err(e) => {
                    let detail = e.to_string();
                    for j in i..self.n {
                        let err = TaskError {
                            index: self.first + j,
                            worker: self.worker.to_string(),
                            failure: TaskFailure::DecodeResult(detail.clone()),
                        };
                        each(self.first + j, Err(err));
                    }
                    return;
                }
            }
        }
    }
}

/// A batch whose results can be taken out one by one, in order.
pub(crate) trait Unpack<R>: Batch {
    /// The index of its first task in the call.
    fn first(&self) -> usize;
    /// Calls `each(index, result)` for each of its tasks, in order.
    fn unpack(self, each: &mut dyn FnMut(usize, Result<R, TaskError>));

    /// Appends its values to `out` in one move if every task succeeded;
    /// otherwise hands the batch back.
    fn append_values(self, out: &mut Vec<R>) -> Result<(), Self>
    where
        Self: Sized,
    {
        let _ = out;
        Err(self)
    }
}

impl<R: DeserializeOwned> Unpack<R> for Frame {
    fn first(&self) -> usize {
        self.first
    }

    fn unpack(self, each: &mut dyn FnMut(usize, Result<R, TaskError>)) {
        self.decode::<R>(each);
    }

    fn append_values(self, out: &mut Vec<R>) -> Result<(), Self> {
        let start = out.len();
        let mut rest = self.bytes.get(self.skip..).unwrap_or_default();
        for _ in 0..self.n {
            // `Ok(v)` in postcard is the variant index 0 (one byte) then
            // `v`: decoded as an `R` alone, without the whole
            // `Result<R, TaskFailure>` (a large type) for each value.
            if let Some((0, after)) = rest.split_first()
                && let Ok((v, tail)) = postcard::take_from_bytes::<R>(after)
            {
                out.push(v);
                rest = tail;
            } else {
                // A failure (or bytes that do not decode): the caller takes
                // the slow path, which says which task and why.
                out.truncate(start);
                return Err(self);
            }
        }
        Ok(())
    }
}

/// A thread pool's results of tasks `first ..` of a call: the values of
/// those that succeeded, in order, and the failures with their positions
/// (kept apart so that a value costs only its own size).
#[derive(Debug)]
pub(crate) struct Typed<R> {
    pub(crate) first: usize,
    pub(crate) values: Vec<R>,
    /// `(position in this batch, error)`, ascending.
    pub(crate) errors: Vec<(usize, TaskError)>,
}

impl<R> Batch for Typed<R> {
    fn tasks(&self) -> usize {
        self.values.len() + self.errors.len()
    }
}

impl<R> Unpack<R> for Typed<R> {
    fn first(&self) -> usize {
        self.first
    }

    fn append_values(mut self, out: &mut Vec<R>) -> Result<(), Self> {
        if !self.errors.is_empty() {
            return Err(self);
        }
        if out.is_empty() && out.capacity() <= self.values.len() {
            *out = std::mem::take(&mut self.values);
        } else {
            out.append(&mut self.values);
        }
        Ok(())
    }

    fn unpack(self, each: &mut dyn FnMut(usize, Result<R, TaskError>)) {
        let n = self.tasks();
        let mut values = self.values.into_iter();
        let mut errors = self.errors.into_iter().peekable();
        for i in 0..n {
            if errors.peek().is_some_and(|(at, _)| *at == i) {
                let (_, e) = errors.next().expect("peeked");
                each(self.first + i, Err(e));
            } else if let Some(v) = values.next() {
                each(self.first + i, Ok(v));
            }
        }
    }
}

/// Why a call's unfinished tasks will never finish.
#[derive(Clone, Debug)]
pub(crate) enum Abort {
    Terminated,
    Initializer { worker: String, cause: String },
}

impl Abort {
    pub(crate) fn error(&self) -> PoolError {
        match self {
            Self::Terminated => PoolError::Terminated,
            Self::Initializer { worker, cause } => PoolError::Initializer {
                worker: worker.clone(),
                cause: cause.clone(),
            },
        }
    }
}

/// A batch of results a job receives: a [`Frame`] of encoded results from
/// a worker process, or typed results from a thread pool's thread.
pub(crate) trait Batch {
    /// How many tasks' results it holds.
    fn tasks(&self) -> usize;
}

impl Batch for Frame {
    fn tasks(&self) -> usize {
        self.n
    }
}

/// What a job holds, under its lock.
#[derive(Debug)]
pub(crate) struct State<F = Frame> {
    /// Batches not yet taken by the caller, in arrival order.
    pub(crate) frames: Vec<F>,
    /// Tasks with a result.
    pub(crate) finished: usize,
    /// Tasks submitted so far.
    pub(crate) submitted: usize,
    /// No more tasks will be submitted.
    pub(crate) input_done: bool,
    /// Set when the pool gave up on the unfinished tasks.
    pub(crate) aborted: Option<Abort>,
}

impl<F> Default for State<F> {
    fn default() -> Self {
        Self {
            frames: Vec::new(),
            finished: 0,
            submitted: 0,
            input_done: false,
            aborted: None,
        }
    }
}

impl<F> State<F> {
    /// Every submitted task has a result and no more will come (or the job
    /// was given up).
    pub(crate) fn complete(&self) -> bool {
        (self.input_done && self.finished >= self.submitted) || self.aborted.is_some()
    }
}

/// What runs once when the job completes, in the driver thread: it reads
/// the results under the job's lock and returns the user's callback, which
/// is called after the lock is released (so a callback may use the pool,
/// or this very result).
pub(crate) type OnDone<F = Frame> = Box<dyn FnOnce(&State<F>) -> Box<dyn FnOnce()> + Send>;

/// One call's results.
pub(crate) struct Job<F = Frame> {
    state: Mutex<State<F>>,
    cond: Condvar,
    /// Bumped at every delivery, for waiters that spin.
    version: AtomicU64,
    /// Whether a waiter sleeps on `cond`.
    sleepers: AtomicBool,
    on_done: Mutex<Option<OnDone<F>>>,
}

impl<F: Batch + std::fmt::Debug> std::fmt::Debug for Job<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

/// How long a waiter spins before it sleeps: about what a wake-up costs on
/// a VM (30-70 us), so a result that comes soon is taken without one.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

impl<F: Batch> Job<F> {
    pub(crate) fn new(on_done: Option<OnDone<F>>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            version: AtomicU64::new(0),
            sleepers: AtomicBool::new(false),
            on_done: Mutex::new(on_done),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<F>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `n` more tasks submitted (and, with `last`, that no more will
    /// come).
    pub(crate) fn submitted(&self, n: usize, last: bool) {
        let mut st = self.lock();
        st.submitted += n;
        st.input_done |= last;
        self.changed(st);
    }

    /// Delivers a frame of results (in the driver thread).
    pub(crate) fn deliver(&self, frame: F) {
        let mut st = self.lock();
        st.finished += frame.tasks();
        st.frames.push(frame);
        self.changed(st);
    }

    /// Gives up on the unfinished tasks.
    pub(crate) fn abort(&self, why: Abort) {
        let mut st = self.lock();
        if st.aborted.is_none() && !st.complete() {
            st.aborted = Some(why);
        }
        self.changed(st);
    }

    fn changed(&self, st: MutexGuard<'_, State<F>>) {
        let complete = st.complete();
        // Release: pairs with the Acquire load of spinning waiters, who then
        // take the lock anyway.
        self.version.fetch_add(1, Ordering::Release);
        let callback = if complete {
            let cb = self
                .on_done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            cb.map(|cb| cb(&st))
        } else {
            None
        };
        drop(st);
        // SeqCst with the waiter's store of `sleepers` and load of the state
        // under the lock: a waiter either sees the change or is notified.
        if self.sleepers.load(Ordering::SeqCst) {
            self.cond.notify_all();
        }
        if let Some(f) = callback {
            // A callback that panics loses its own call only: the pool's
            // thread goes on (Python's result handler dies there, and the
            // pool with it).
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                tracing::error!("a pool callback panicked: {}", crate::task::payload_message(p.as_ref()));
            }
        }
    }

    /// Waits until `ready(state)` holds or the deadline passes; returns the
    /// locked state either way (the caller checks again).
    pub(crate) fn wait_for(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn(&State<F>) -> bool,
    ) -> MutexGuard<'_, State<F>> {
        self.wait_spinning(deadline, SPIN, ready)
    }

    /// As [`Self::wait_for`], spinning `spin` before sleeping (zero for a
    /// waiter that expects a long wait, so it leaves the CPU to workers).
    pub(crate) fn wait_spinning(
        &self,
        deadline: Option<Instant>,
        spin: Duration,
        ready: impl Fn(&State<F>) -> bool,
    ) -> MutexGuard<'_, State<F>> {
        let spin_until = Instant::now() + spin;
        let mut seen = u64::MAX;
        loop {
            // Acquire: pairs with the Release bump in `changed`.
            let v = self.version.load(Ordering::Acquire);
            if v != seen {
                seen = v;
                let st = self.lock();
                if ready(&st) {
                    return st;
                }
            }
            let now = Instant::now();
            if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                break;
            }
            for _ in 0..4 {
                std::hint::spin_loop();
            }
            std::thread::yield_now();
        }
        let mut st = self.lock();
        loop {
            if ready(&st) {
                return st;
            }
            self.sleepers.store(true, Ordering::SeqCst);
            if ready(&st) {
                return st;
            }
            st = match deadline {
                None => self.cond.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return st;
                    }
                    self.cond
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// Decodes all results of a complete job in input order: the values, or the
/// first failure by index.
pub(crate) fn collect<R: DeserializeOwned>(st: &State) -> Result<Vec<R>, PoolError> {
    if let Some(a) = &st.aborted {
        return Err(a.error());
    }
    let mut frames: Vec<&Frame> = st.frames.iter().collect();
    frames.sort_unstable_by_key(|f| f.first);
    let mut out = Vec::with_capacity(st.submitted);
    let mut first_err: Option<TaskError> = None;
    for f in frames {
        f.decode::<R>(|index, r| match r {
            Ok(v) if first_err.is_none() && index == out.len() => out.push(v),
            Ok(_) => {}
            Err(e) => {
                if first_err.as_ref().is_none_or(|x| e.index < x.index) {
                    first_err = Some(e);
                }
            }
        });
    }
    if let Some(e) = first_err {
        return Err(PoolError::Task(e));
    }
    if out.len() != st.submitted {
        return Err(PoolError::Task(TaskError {
            index: out.len(),
            worker: String::from("(none)"),
            failure: TaskFailure::NotRun("the pool lost this task's result (an internal error)".into()),
        }));
    }
    Ok(out)
}

/// Waits for a job's results, decoding them as they arrive (in the
/// caller's thread, while the workers run): the values in input order,
/// or the first failure by index once every task is done.
pub(crate) fn collect_streaming<R, F: Unpack<R>>(job: &Job<F>) -> Result<Vec<R>, PoolError> {
    let mut out: Vec<R> = Vec::new();
    // Batches that came before their turn, by their first index.
    let mut early: std::collections::BTreeMap<usize, F> = std::collections::BTreeMap::new();
    let mut first_err: Option<TaskError> = None;
    loop {
        let left = {
            let st = job.lock();
            st.submitted.saturating_sub(st.finished)
        };
        // Spin only for the last result or two (an `apply`): while many
        // are due, the CPU is the workers'.
        let spin = if left <= 2 { SPIN } else { Duration::ZERO };
        let mut st = job.wait_spinning(None, spin, |st| !st.frames.is_empty() || st.complete());
        let frames = std::mem::take(&mut st.frames);
        let (complete, aborted, submitted) = (st.complete(), st.aborted.clone(), st.submitted);
        drop(st);
        // Room for every result known so far, once: no regrowth copies.
        out.reserve(submitted.saturating_sub(out.len()));
        for f in frames {
            early.insert(f.first(), f);
        }
        while let Some(f) = early.remove(&out.len()) {
            let (before, n) = (out.len(), f.tasks());
            let f = if first_err.is_none() {
                match f.append_values(&mut out) {
                    Ok(()) => continue,
                    Err(f) => f,
                }
            } else {
                f
            };
            decode_into(f, &mut out, &mut first_err);
            if out.len() < before + n {
                // A failure stopped the values: the rest are decoded at the
                // end, for their errors only.
                break;
            }
        }
        if let Some(a) = aborted {
            return Err(a.error());
        }
        if complete {
            break;
        }
    }
    for f in std::mem::take(&mut early).into_values() {
        decode_into(f, &mut out, &mut first_err);
    }
    if let Some(e) = first_err {
        return Err(PoolError::Task(e));
    }
    Ok(out)
}

/// Appends a batch's values to `out` while they continue it and no task
/// failed, and keeps the failure of the lowest index.
fn decode_into<R, F: Unpack<R>>(f: F, out: &mut Vec<R>, first_err: &mut Option<TaskError>) {
    f.unpack(&mut |index, r| match r {
        Ok(v) if first_err.is_none() && index == out.len() => out.push(v),
        Ok(_) => {}
        Err(e) => {
            if first_err.as_ref().is_none_or(|x| e.index < x.index) {
                *first_err = Some(e);
            }
        }
    });
}
