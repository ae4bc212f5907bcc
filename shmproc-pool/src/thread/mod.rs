//! [`ThreadPool`]: the pool's interface on threads (Python's
//! `multiprocessing.dummy.Pool`). Tasks may be closures that capture, and
//! arguments and results need not be serde: nothing leaves the process.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{PoolError, TaskError, TaskFailure};
use crate::job::{Abort, Job, OnDone, State, Typed};
use crate::results::{Feed, IMap, ProcIMap, Source};
use crate::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use crate::task::payload_message;

mod calls;
mod placed;
mod tasks;

pub use tasks::{ThreadStarTask, ThreadTask};

/// A task function as the threads call it.
pub(crate) type Call<S, A, R> = Arc<dyn Fn(&mut S, A) -> R + Send + Sync>;

/// Something queued for the threads: runs on a thread's state, or is given
/// up when the pool terminates.
trait Work<S>: Send {
    fn run(self: Box<Self>, state: &mut S, worker: &Arc<str>, done: &AtomicU64);
    fn abort(self: Box<Self>, why: Abort);
}

/// Tasks `first ..` of a call: their arguments, the function, the job.
struct Chunk<S, A, R> {
    f: Call<S, A, R>,
    first: usize,
    args: Vec<A>,
    job: Arc<Job<Typed<R>>>,
}

impl<S, A: Send, R: Send> Work<S> for Chunk<S, A, R> {
    fn run(self: Box<Self>, state: &mut S, worker: &Arc<str>, done: &AtomicU64) {
        let mut values = Vec::with_capacity(self.args.len());
        let mut errors = Vec::new();
        let f = &*self.f;
        for (i, a) in self.args.into_iter().enumerate() {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(state, a))) {
                Ok(v) => values.push(v),
                Err(p) => errors.push((
                    i,
                    TaskError {
                        index: self.first + i,
                        worker: worker.to_string(),
                        failure: TaskFailure::Panicked(payload_message(p.as_ref())),
                    },
                )),
            }
            // Relaxed: a progress count only this thread writes.
            done.store(done.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        self.job.deliver(Typed {
            first: self.first,
            values,
            errors,
        });
    }

    fn abort(self: Box<Self>, why: Abort) {
        self.job.abort(why);
    }
}

/// The queue of work and the pool's state, under one lock.
struct Queue<S> {
    items: VecDeque<Box<dyn Work<S>>>,
    close: bool,
    terminate: bool,
    broken: Option<Abort>,
}

/// What the pool's handle and its threads share.
struct Core<S> {
    queue: Mutex<Queue<S>>,
    cond: Condvar,
    /// Per thread, tasks finished (each on its own cache line).
    done: Vec<Padded>,
}

#[repr(align(64))]
struct Padded(AtomicU64);

impl<S> Core<S> {
    fn lock(&self) -> MutexGuard<'_, Queue<S>> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Builds a [`ThreadPool`].
#[must_use]
pub struct ThreadPoolBuilder<S = ()> {
    threads: Option<usize>,
    max_tasks: Option<u64>,
    init: Arc<dyn Fn() -> S + Send + Sync>,
}

impl<S> std::fmt::Debug for ThreadPoolBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("processes", &self.threads)
            .field("maxtasksperchild", &self.max_tasks)
            .finish_non_exhaustive()
    }
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        Self {
            threads: None,
            max_tasks: None,
            init: Arc::new(|| ()),
        }
    }
}

impl<S: 'static> ThreadPoolBuilder<S> {
    /// The number of threads (Python's `processes`; default: the CPUs this
    /// process may use).
    pub fn processes(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Gives a thread a fresh state (runs the initializer again) after it
    /// ran `n` tasks: a thread pool's form of Python's `maxtasksperchild`.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Runs `f(args.clone())` once in each thread; what it returns is the
    /// thread's state, which tasks of the form `Fn(&mut S, A) -> R` get.
    pub fn initializer<IA, S2>(self, f: impl Fn(IA) -> S2 + Send + Sync + 'static, args: IA) -> ThreadPoolBuilder<S2>
    where
        IA: Clone + Send + Sync + 'static,
    {
        ThreadPoolBuilder {
            threads: self.threads,
            max_tasks: self.max_tasks,
            init: Arc::new(move || f(args.clone())),
        }
    }

    /// Starts the threads, and waits until each ran its initializer.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoWorkers`] for zero threads, [`PoolError::Initializer`]
    /// when an initializer panicked, [`PoolError::Thread`].
    pub fn build(self) -> Result<ThreadPool<S>, PoolError> {
        let n = self.threads.unwrap_or_else(shmproc_core::cpu_count);
        if n == 0 {
            return Err(PoolError::NoWorkers);
        }
        let core = Arc::new(Core {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                close: false,
                terminate: false,
                broken: None,
            }),
            cond: Condvar::new(),
            done: (0..n).map(|_| Padded(AtomicU64::new(0))).collect(),
        });
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), (String, String)>>();
        let mut threads = Vec::with_capacity(n);
        for k in 0..n {
            let core = Arc::clone(&core);
            let init = Arc::clone(&self.init);
            let tx = tx.clone();
            let max_tasks = self.max_tasks;
            let name: Arc<str> = format!("ThreadPoolWorker-{}", k + 1).into();
            let h = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || serve(&core, k, &name, &*init, max_tasks, &tx))
                .map_err(|e| PoolError::Thread(e.to_string()))?;
            threads.push(h);
        }
        drop(tx);
        let pool = ThreadPool {
            core,
            threads: Mutex::new(threads),
            n,
            state: AtomicU8::new(OPEN),
            _s: PhantomData,
        };
        for _ in 0..n {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err((worker, cause))) => {
                    pool.terminate();
                    return Err(PoolError::Initializer { worker, cause });
                }
                Err(_) => break,
            }
        }
        Ok(pool)
    }
}

/// Runs the initializer; its panic as `(worker, message)`.
fn init_state<S>(init: &(dyn Fn() -> S + Send + Sync), name: &str) -> Result<S, (String, String)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(init))
        .map_err(|p| (name.to_owned(), payload_message(p.as_ref())))
}

/// A thread's life: take work, run it, until closed and drained or
/// terminated.
fn serve<S>(
    core: &Core<S>,
    k: usize,
    name: &Arc<str>,
    init: &(dyn Fn() -> S + Send + Sync),
    max_tasks: Option<u64>,
    ready: &std::sync::mpsc::Sender<Result<(), (String, String)>>,
) {
    let mut state = match init_state(init, name) {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let done = &core.done[k].0;
    let mut since_init = 0u64;
    loop {
        let work = {
            let mut q = core.lock();
            loop {
                if q.terminate {
                    return;
                }
                if let Some(w) = q.items.pop_front() {
                    break w;
                }
                if q.close {
                    return;
                }
                q = core.cond.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        // Relaxed: this thread's own counter.
        let before = done.load(Ordering::Relaxed);
        work.run(&mut state, name, done);
        since_init += done.load(Ordering::Relaxed) - before;
        if max_tasks.is_some_and(|m| since_init >= m) {
            since_init = 0;
            match init_state(init, name) {
                Ok(s) => state = s,
                Err((worker, cause)) => {
                    let why = Abort::Initializer { worker, cause };
                    let mut q = core.lock();
                    q.broken = Some(why.clone());
                    q.terminate = true;
                    for w in q.items.drain(..) {
                        w.abort(why.clone());
                    }
                    core.cond.notify_all();
                    return;
                }
            }
        }
    }
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// Tasks per unit of work handed to a thread when the caller gave no
/// chunk size for `imap`.
const IMAP_CHUNK: usize = 1;

/// A pool of threads with the same interface as [`Pool`](crate::Pool)
/// (Python's `multiprocessing.dummy.Pool`): switch between them with one
/// line, or write code over [`PoolApi`](crate::PoolApi). Tasks may be
/// closures that capture; arguments and results need only be `Send`.
///
/// A task that panics fails alone, with its message. Threads cannot be
/// killed: `terminate` drops the queued tasks and waits for the running
/// ones to return, as Python's does, and there is no task timeout.
pub struct ThreadPool<S: 'static = ()> {
    core: Arc<Core<S>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    n: usize,
    state: AtomicU8,
    _s: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for ThreadPool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("processes", &self.n)
            .finish_non_exhaustive()
    }
}

impl ThreadPool {
    /// A pool of `threads` threads.
    ///
    /// # Errors
    ///
    /// As [`ThreadPoolBuilder::build`].
    pub fn new(threads: usize) -> Result<Self, PoolError> {
        ThreadPoolBuilder::default().processes(threads).build()
    }

    /// A builder, with one thread per CPU this process may use unless set.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }
}

/// A thread pool's result: moved out of the job by the first `get`.
pub(crate) struct ThreadSource<R, T> {
    pub(crate) job: Arc<Job<Typed<R>>>,
    pub(crate) take: fn(&mut State<Typed<R>>) -> Result<T, PoolError>,
}

impl<R: Send, T> Source<T> for ThreadSource<R, T> {
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        self.job.wait_for(deadline, State::complete).complete()
    }

    fn is_ready(&self) -> bool {
        self.job.lock().complete()
    }

    fn outcome(&self) -> Result<T, PoolError> {
        (self.take)(&mut self.job.lock())
    }

    fn succeeded(&self) -> bool {
        let st = self.job.lock();
        st.aborted.is_none() && st.frames.iter().all(|f| f.errors.is_empty())
    }
}

/// Every result in input order, or the first failure by index.
pub(crate) fn take_all<R>(st: &mut State<Typed<R>>) -> Result<Vec<R>, PoolError> {
    if let Some(a) = &st.aborted {
        return Err(a.error());
    }
    if st.frames.is_empty() && st.submitted > 0 {
        return Err(PoolError::Taken);
    }
    let mut frames = std::mem::take(&mut st.frames);
    frames.sort_unstable_by_key(|f| f.first);
    if let Some((_, e)) = frames.iter_mut().find_map(|f| f.errors.first_mut()) {
        let e = e.clone();
        return Err(PoolError::Task(e));
    }
    let mut out = Vec::with_capacity(st.submitted);
    for f in frames {
        out.extend(f.values);
    }
    Ok(out)
}

pub(crate) fn take_one<R>(st: &mut State<Typed<R>>) -> Result<R, PoolError> {
    take_all(st)?.pop().ok_or(PoolError::Taken)
}

/// Every result in input order, or the first failure by index, leaving
/// the results for `get`.
fn peek_all<R: Clone>(st: &State<Typed<R>>) -> Result<Vec<R>, PoolError> {
    if let Some(a) = &st.aborted {
        return Err(a.error());
    }
    let mut frames: Vec<&Typed<R>> = st.frames.iter().collect();
    frames.sort_unstable_by_key(|f| f.first);
    if let Some((_, e)) = frames.iter().find_map(|f| f.errors.first()) {
        return Err(PoolError::Task(e.clone()));
    }
    let mut out = Vec::with_capacity(st.submitted);
    for f in frames {
        out.extend(f.values.iter().cloned());
    }
    Ok(out)
}

/// The completion callback of an `_then` call: it gets a copy of the
/// results, which stay for `get`.
fn then<R: Clone + 'static, T: 'static>(
    pick: fn(Vec<R>) -> Result<T, PoolError>,
    callback: impl FnOnce(T) + Send + 'static,
    error_callback: impl FnOnce(PoolError) + Send + 'static,
) -> OnDone<Typed<R>> {
    Box::new(move |st: &State<Typed<R>>| -> Box<dyn FnOnce()> {
        match peek_all(st).and_then(pick) {
            Ok(v) => Box::new(move || callback(v)),
            Err(e) => Box::new(move || error_callback(e)),
        }
    })
}

#[allow(clippy::unnecessary_wraps, reason = "the shape `then` takes, as `one`")]
fn all<R>(v: Vec<R>) -> Result<Vec<R>, PoolError> {
    Ok(v)
}

fn one<R>(mut v: Vec<R>) -> Result<R, PoolError> {
    v.pop().ok_or(PoolError::Taken)
}

impl<S: 'static> ThreadPool<S> {
    /// The number of threads.
    pub fn processes(&self) -> usize {
        self.n
    }

    /// Tasks finished so far, over every call, task by task.
    pub fn finished(&self) -> u64 {
        // Relaxed: counters for display.
        self.core.done.iter().map(|d| d.0.load(Ordering::Relaxed)).sum()
    }

    fn check_open(&self) -> Result<(), PoolError> {
        if let Some(why) = self.core.lock().broken.clone() {
            return Err(why.error());
        }
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            CLOSED => Err(PoolError::Closed),
            _ => Err(PoolError::Terminated),
        }
    }

    /// Queues `items` in chunks of `chunksize` on `job`.
    fn post<A, R>(
        &self,
        job: &Arc<Job<Typed<R>>>,
        f: &Call<S, A, R>,
        base: usize,
        items: Vec<A>,
        chunksize: usize,
        last: bool,
    ) where
        A: Send + 'static,
        R: Send + 'static,
    {
        let n = items.len();
        job.submitted(n, last);
        if n == 0 {
            return;
        }
        let mut q = self.core.lock();
        let mut first = base;
        let mut items = items.into_iter();
        loop {
            let args: Vec<A> = items.by_ref().take(chunksize).collect();
            if args.is_empty() {
                break;
            }
            let len = args.len();
            q.items.push_back(Box::new(Chunk {
                f: Arc::clone(f),
                first,
                args,
                job: Arc::clone(job),
            }));
            first += len;
        }
        drop(q);
        self.core.cond.notify_all();
    }

    pub(crate) fn submit<A, R>(
        &self,
        f: Call<S, A, R>,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        on_done: Option<OnDone<Typed<R>>>,
    ) -> Result<Arc<Job<Typed<R>>>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
    {
        self.check_open()?;
        if chunksize == Some(0) {
            return Err(PoolError::ZeroChunksize);
        }
        let items = items.into_iter();
        // Python's default chunk size needs the length: an input that does
        // not know it is read whole first.
        let (items, len): (Box<dyn Iterator<Item = A>>, usize) = match items.size_hint() {
            (lo, Some(hi)) if lo == hi => (Box::new(items), lo),
            _ => {
                let all: Vec<A> = items.collect();
                let n = all.len();
                (Box::new(all.into_iter()), n)
            }
        };
        let chunksize = chunksize.unwrap_or_else(|| crate::pool::default_chunksize(len, self.n));
        let job = Job::new(on_done);
        // Chunk by chunk, each queued as soon as it is cut: the threads start
        // on the first while this thread cuts the next.
        let mut items = items.peekable();
        let mut base = 0;
        loop {
            let chunk: Vec<A> = items.by_ref().take(chunksize).collect();
            let n = chunk.len();
            let last = items.peek().is_none();
            self.post(&job, &f, base, chunk, chunksize, last);
            base += n;
            if last {
                break;
            }
        }
        Ok(job)
    }

    /// Queues one unit of work and wakes a thread for it.
    fn queue(&self, work: Box<dyn Work<S>>) {
        self.core.lock().items.push_back(work);
        self.core.cond.notify_one();
    }

    pub(crate) fn wrap<A, R, M>(f: impl ThreadTask<S, A, R, M>) -> Call<S, A, R>
    where
        A: 'static,
        R: 'static,
    {
        Arc::new(move |s: &mut S, a: A| f.run(s, a))
    }

    fn wrap_star<Args, R, M>(f: impl ThreadStarTask<S, Args, R, M>) -> Call<S, Args, R>
    where
        Args: 'static,
        R: 'static,
    {
        Arc::new(move |s: &mut S, a: Args| f.run(s, a))
    }

    pub(crate) fn imap_with<'a, A, R>(
        &'a self,
        f: Call<S, A, R>,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
    {
        self.check_open()?;
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        let mut items = items.into_iter();
        let len = match items.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let job: Arc<Job<Typed<R>>> = Job::new(None);
        let feed_job = Arc::clone(&job);
        let mut base = 0;
        let feed: Feed<'a> = Box::new(move |room| {
            self.check_open()?;
            let want = room.div_ceil(chunksize) * chunksize;
            let batch: Vec<A> = items.by_ref().take(want).collect();
            let n = batch.len();
            let last = n < want;
            self.post(&feed_job, &f, base, batch, chunksize, last);
            base += n;
            Ok(n)
        });
        let window = self.n * (2 * chunksize).max(64);
        let mut it = ProcIMap::new(job, feed, window, ordered, len);
        it.top_up()?;
        Ok(IMap::new(it))
    }

    /// Python's `close`: no more work is taken; the threads exit once the
    /// queued work is done.
    pub fn close(&self) {
        if self
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.core.lock().close = true;
            self.core.cond.notify_all();
        }
    }

    /// Python's `terminate`: queued tasks are dropped (their calls fail with
    /// [`PoolError::Terminated`]); running tasks are waited for, since a
    /// thread cannot be killed.
    pub fn terminate(&self) {
        if self.state.swap(TERMINATED, Ordering::AcqRel) != TERMINATED {
            let mut q = self.core.lock();
            q.terminate = true;
            for w in q.items.drain(..) {
                w.abort(Abort::Terminated);
            }
            drop(q);
            self.core.cond.notify_all();
        }
        self.join_threads();
    }

    /// Python's `join`: waits for the threads to exit, after
    /// [`Self::close`] or [`Self::terminate`].
    ///
    /// # Errors
    ///
    /// [`PoolError::NotClosed`] if the pool is still open.
    pub fn join(&self) -> Result<(), PoolError> {
        if self.state.load(Ordering::Acquire) == OPEN {
            return Err(PoolError::NotClosed);
        }
        self.join_threads();
        Ok(())
    }

    fn join_threads(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl<S: 'static> Drop for ThreadPool<S> {
    fn drop(&mut self) {
        self.terminate();
    }
}
