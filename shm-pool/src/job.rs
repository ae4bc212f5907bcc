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
    /// `n` postcard `Result<R, TaskFailure>`.
    pub(crate) bytes: Vec<u8>,
}

impl Frame {
    /// Decodes the results, calling `each(index, result)` in order. Bytes
    /// that do not decode fail the rest of the frame's tasks.
    pub(crate) fn decode<R: DeserializeOwned>(&self, mut each: impl FnMut(usize, Result<R, TaskError>)) {
        let mut rest = &self.bytes[..];
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

/// What a job holds, under its lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Frames not yet taken by the caller, in arrival order.
    pub(crate) frames: Vec<Frame>,
    /// Tasks with a result.
    pub(crate) finished: usize,
    /// Tasks submitted so far.
    pub(crate) submitted: usize,
    /// No more tasks will be submitted.
    pub(crate) input_done: bool,
    /// Set when the pool gave up on the unfinished tasks.
    pub(crate) aborted: Option<Abort>,
}

impl State {
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
pub(crate) type OnDone = Box<dyn FnOnce(&State) -> Box<dyn FnOnce()> + Send>;

/// One call's results.
pub(crate) struct Job {
    state: Mutex<State>,
    cond: Condvar,
    /// Bumped at every delivery, for waiters that spin.
    version: AtomicU64,
    /// Whether a waiter sleeps on `cond`.
    sleepers: AtomicBool,
    on_done: Mutex<Option<OnDone>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

/// How long a waiter spins before it sleeps: about what a wake-up costs on
/// a VM (30-70 us), so a result that comes soon is taken without one.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

impl Job {
    pub(crate) fn new(on_done: Option<OnDone>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            version: AtomicU64::new(0),
            sleepers: AtomicBool::new(false),
            on_done: Mutex::new(on_done),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
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
    pub(crate) fn deliver(&self, frame: Frame) {
        let mut st = self.lock();
        st.finished += frame.n;
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

    fn changed(&self, st: MutexGuard<'_, State>) {
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
    pub(crate) fn wait_for(&self, deadline: Option<Instant>, ready: impl Fn(&State) -> bool) -> MutexGuard<'_, State> {
        self.wait_spinning(deadline, SPIN, ready)
    }

    /// As [`Self::wait_for`], spinning `spin` before sleeping (zero for a
    /// waiter that expects a long wait, so it leaves the CPU to workers).
    pub(crate) fn wait_spinning(
        &self,
        deadline: Option<Instant>,
        spin: Duration,
        ready: impl Fn(&State) -> bool,
    ) -> MutexGuard<'_, State> {
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
