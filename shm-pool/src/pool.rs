//! [`Pool`] and its builder.

use crate::sync::atomic::{AtomicU8, Ordering};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shm_collections::bytes;
use shm_core::{Context, Process, StartMethod};

use crate::auth::Key;
use crate::bell::Bell;
use crate::driver::{Chunk, Config, Driver, Shared, Worker};
use crate::error::PoolError;
use crate::job::{Job, OnDone, State};
use crate::results::{self, AsyncResult, Feed, IMap, ProcIMap, ProcSource};
use crate::task::{self, Call, MapCall, StarCall, StarTask, Task, Trampoline};
use crate::worker::{self, Initializer};

/// The initializer of a pool built without one.
#[derive(Clone, Copy, Debug)]
pub struct NoInit;

impl Initializer<(), ()> for NoInit {
    fn init(&self, (): ()) {}
}

/// The initializer of [`PoolBuilder::shared_input`]: the input is the state.
#[derive(Clone, Copy, Debug)]
pub struct SharedInput;

impl<T> Initializer<T, T> for SharedInput {
    fn init(&self, input: T) -> T {
        input
    }
}

/// Bytes of each of a worker's two rings unless set.
const RING_BYTES: usize = 1 << 20;

/// Builds a [`Pool`]: Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild, context)`, plus what Python lacks (worker state,
/// retries, a task timeout).
#[must_use]
pub struct PoolBuilder<S = (), IA = (), I = NoInit> {
    processes: Option<usize>,
    max_tasks: Option<u64>,
    method: Option<StartMethod>,
    retries: u32,
    task_timeout: Option<Duration>,
    ring_bytes: usize,
    init: I,
    init_args: IA,
    _s: PhantomData<fn() -> S>,
}

impl<S, IA: std::fmt::Debug, I> std::fmt::Debug for PoolBuilder<S, IA, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("maxtasksperchild", &self.max_tasks)
            .field("start_method", &self.method)
            .field("retries", &self.retries)
            .field("task_timeout", &self.task_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            processes: None,
            max_tasks: None,
            method: None,
            retries: 0,
            task_timeout: None,
            ring_bytes: RING_BYTES,
            init: NoInit,
            init_args: (),
            _s: PhantomData,
        }
    }
}

impl<S, IA, I> PoolBuilder<S, IA, I>
where
    S: 'static,
    IA: serde::Serialize + DeserializeOwned + Clone + Send + 'static,
    I: Initializer<IA, S>,
{
    /// The number of worker processes (default: the CPUs this process may
    /// use, Python's `os.process_cpu_count()`).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Replaces a worker after it ran `n` tasks (Python's
    /// `maxtasksperchild`); no limit by default.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// How workers are started (default: the program's start method).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts workers with the context's start method (Python's
    /// `context=`).
    pub fn context(self, ctx: &Context) -> Self {
        self.start_method(ctx.start_method())
    }

    /// Runs a task again, on another worker, when its worker dies under it,
    /// up to `n` times (default 0: the task fails with
    /// [`TaskFailure::WorkerDied`](crate::TaskFailure::WorkerDied)).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Kills and replaces a worker whose task runs longer than `limit`; that
    /// task fails with [`TaskFailure::TimedOut`](crate::TaskFailure::TimedOut).
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// The size in bytes of each worker's task and result rings (default
    /// 1 MiB): an argument or result must fit in half of one.
    pub fn ring_capacity(mut self, bytes: usize) -> Self {
        self.ring_bytes = bytes;
        self
    }

    /// Runs `f(args)` once in each worker before its tasks (Python's
    /// `initializer` and `initargs`); what it returns is the worker's state,
    /// which tasks of the form `fn(&mut S, A) -> R` get (mpire's
    /// `worker_state`). The arguments go to each worker once: they are the
    /// pool's shared input (under fork, copied with the memory; pass a
    /// [`RawArray`](shm_core::RawArray) to share large data without copies).
    /// An initializer that panics or exits fails the pool, never loops.
    pub fn initializer<IA2, S2, I2>(self, f: I2, args: IA2) -> PoolBuilder<S2, IA2, I2>
    where
        IA2: serde::Serialize + DeserializeOwned + Clone + Send + 'static,
        S2: 'static,
        I2: Initializer<IA2, S2>,
    {
        PoolBuilder {
            processes: self.processes,
            max_tasks: self.max_tasks,
            method: self.method,
            retries: self.retries,
            task_timeout: self.task_timeout,
            ring_bytes: self.ring_bytes,
            init: f,
            init_args: args,
            _s: PhantomData,
        }
    }

    /// Hands `input` to every worker once, as its state: tasks of the form
    /// `fn(&mut T, A) -> R` read it (an initializer that returns its
    /// argument).
    pub fn shared_input<T>(self, input: T) -> PoolBuilder<T, T, SharedInput>
    where
        T: serde::Serialize + DeserializeOwned + Clone + Send + 'static,
    {
        self.initializer(SharedInput, input)
    }

    /// Starts the workers, and waits until each ran its initializer.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoWorkers`] for zero processes,
    /// [`PoolError::Initializer`] when an initializer failed,
    /// [`PoolError::Start`] or [`PoolError::Segment`] when a worker could
    /// not be started.
    pub fn build(self) -> Result<Pool<S>, PoolError> {
        const {
            assert!(
                size_of::<I>() == 0,
                "a pool initializer must be a function or a closure that captures nothing"
            );
        };
        // The initializer travels as its type: the worker conjures it.
        let _init: I = self.init;
        let n = self.processes.unwrap_or_else(shm_core::cpu_count);
        if n == 0 {
            return Err(PoolError::NoWorkers);
        }
        let method = self.method.unwrap_or_else(shm_core::get_start_method);
        let key = Key::random().map_err(|e| PoolError::Thread(format!("no random key: {e}")))?;
        let bell = Bell::new(n)?;
        let shared = Arc::new(Shared::new(bell.clone(), n));
        let mut starter = Starter::<S, IA, I> {
            key,
            bell,
            method,
            ring_bytes: self.ring_bytes,
            max_tasks: self.max_tasks,
            init_args: self.init_args,
            _t: PhantomData,
        };
        // Under fork, the first workers are forked here, before the pool's
        // thread exists; replacements come from the fork server, since a
        // process with threads must not fork (`ProcessError::ForkWithThreads`).
        let mut workers = Vec::with_capacity(n);
        for slot in 0..n {
            match starter.start(slot, method) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    kill_all(&workers);
                    return Err(e);
                }
            }
        }
        let later = if method == StartMethod::Fork {
            StartMethod::ForkServer
        } else {
            method
        };
        let cfg = Config {
            slots: n,
            key,
            retries: self.retries,
            task_timeout: self.task_timeout,
            spawn: Box::new(move |slot| starter.start(slot, later)),
        };
        let driver = Driver::new(Arc::clone(&shared), cfg, workers);
        let handle = std::thread::Builder::new()
            .name("shm-pool".into())
            .spawn(move || driver.run())
            .map_err(|e| PoolError::Thread(e.to_string()))?;
        let pool = Pool {
            shared,
            driver: Mutex::new(Some(handle)),
            processes: n,
            state: AtomicU8::new(OPEN),
            _s: PhantomData,
        };
        pool.wait_ready()?;
        Ok(pool)
    }
}

fn kill_all(workers: &[Worker]) {
    for w in workers {
        let _ = w.process.kill();
        let _ = w.process.join_timeout(Duration::from_secs(1));
    }
}

/// Starts workers with the pool's types.
struct Starter<S, IA, I> {
    key: Key,
    bell: Bell,
    method: StartMethod,
    ring_bytes: usize,
    max_tasks: Option<u64>,
    init_args: IA,
    _t: PhantomData<fn() -> (S, I)>,
}

impl<S, IA, I> Starter<S, IA, I>
where
    S: 'static,
    IA: serde::Serialize + DeserializeOwned + Clone + Send + 'static,
    I: Initializer<IA, S>,
{
    fn start(&mut self, slot: usize, method: StartMethod) -> Result<Worker, PoolError> {
        let (tasks, their_tasks) = bytes::channel(self.ring_bytes)?;
        let (their_results, results) = bytes::channel(self.ring_bytes)?;
        self.bell.reset(slot);
        let start = worker::Start {
            slot: u32::try_from(slot).expect("fewer than 2^32 workers"),
            key: self.key,
            tasks: their_tasks,
            results: their_results,
            bell: self.bell.clone(),
            max_tasks: self.max_tasks.unwrap_or(0),
            init_args: self.init_args.clone(),
        };
        let process = Process::new(worker::main::<S, IA, I>, start)
            .with_daemon(true)
            .with_start_method(method);
        // Python's names: the process counter of `Process-N`, after the
        // method that started it.
        let number = process.name().rsplit('-').next().unwrap_or("0").to_owned();
        let prefix = match method {
            StartMethod::Fork => "Fork",
            StartMethod::Spawn => "Spawn",
            StartMethod::ForkServer => "ForkServer",
        };
        let name: Arc<str> = format!("{prefix}PoolWorker-{number}").into();
        process.set_name(name.to_string());
        process.start()?;
        let _ = self.method;
        Ok(Worker {
            slot,
            name,
            process,
            tasks,
            results,
            registered: 0,
            in_flight: std::collections::VecDeque::new(),
            tasks_in_flight: 0,
            budget: self.max_tasks,
            ready: false,
            running: None,
            task_secs: 0.0,
            last_done: Instant::now(),
            overdue: None,
            stopping: false,
        })
    }
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// A pool of worker processes with Python's interface (`map`, `imap`,
/// `apply_async`, ...), fed through shared-memory rings.
///
/// Tasks are functions (or closures that capture nothing) with serde
/// arguments and results: `fn(A) -> R`, or `fn(&mut S, A) -> R` to use the
/// worker's state made by the initializer.
///
/// A task that panics fails alone, with its message. A worker that dies is
/// replaced and only the task it ran fails ([`TaskFailure::WorkerDied`],
/// or it is retried with [`PoolBuilder::retries`]); no call hangs. Dropping
/// the pool terminates it, as leaving Python's `with Pool() as p:` does.
///
/// [`TaskFailure::WorkerDied`]: crate::TaskFailure::WorkerDied
pub struct Pool<S: 'static = ()> {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
    processes: usize,
    state: AtomicU8,
    _s: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `processes` workers (Python's `Pool(processes)`); see
    /// [`Pool::builder`] for the other options.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Self, PoolError> {
        PoolBuilder::default().processes(processes).build()
    }

    /// A builder, with one worker per CPU this process may use unless set.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

/// Python's default chunk size for `map`: the input spread in about four
/// chunks per worker.
pub(crate) fn default_chunksize(len: usize, workers: usize) -> usize {
    let per = workers.max(1) * 4;
    len.div_ceil(per).max(1)
}

/// Arguments of one batch of tasks, encoded back to back.
struct Encoded {
    args: Vec<u8>,
    offsets: Vec<u32>,
}

/// Tasks per batch a call posts at once.
const BATCH: usize = 1 << 15;

impl Encoded {
    fn new() -> Self {
        Self::with_capacity(0)
    }

    fn with_capacity(tasks: usize) -> Self {
        let mut offsets = Vec::with_capacity(tasks + 1);
        offsets.push(0);
        Self {
            args: Vec::with_capacity(tasks * 2),
            offsets,
        }
    }

    fn push<A: Serialize>(&mut self, arg: &A, index: usize) -> Result<(), PoolError> {
        crate::wire::append(&mut self.args, arg).map_err(|e| PoolError::Encode {
            index,
            detail: format!("a `{}`: {e}", std::any::type_name::<A>()),
        })?;
        let end = u32::try_from(self.args.len()).map_err(|_| PoolError::Encode {
            index,
            detail: "the arguments of one call exceed 4 GiB".into(),
        })?;
        self.offsets.push(end);
        Ok(())
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
}

impl<S: 'static> Pool<S> {
    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Tasks finished so far, over every call: it moves task by task, even
    /// inside a chunk (for a progress bar).
    pub fn finished(&self) -> u64 {
        self.shared.progress()
    }

    /// Pids and names of the workers now running.
    pub fn workers(&self) -> Vec<(u32, String)> {
        self.shared
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn wait_ready(&self) -> Result<(), PoolError> {
        // The driver reads the workers' first frames: every worker's
        // `Ready`, or a failed initializer, which breaks the pool.
        loop {
            if let Some(why) = self.shared.broken() {
                self.terminate();
                return Err(why.error());
            }
            if self.shared.ready.load(Ordering::Acquire) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn check_open(&self) -> Result<(), PoolError> {
        if let Some(why) = self.shared.broken() {
            return Err(why.error());
        }
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            CLOSED => Err(PoolError::Closed),
            _ => Err(PoolError::Terminated),
        }
    }

    fn trampoline_offset<A, R, C>() -> Result<u64, PoolError>
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        C: Call<S, A, R>,
    {
        let t: Trampoline = task::trampoline::<S, A, R, C>;
        Ok(task::offset_of(t)?)
    }

    /// Encodes `items`, cuts them in chunks and posts them; the job records
    /// `last` when the input is exhausted.
    fn post_batch(&self, job: &Arc<Job>, fn_off: u64, base: usize, enc: Encoded, chunksize: usize, last: bool) {
        let n = enc.len();
        let args = Arc::new(enc.args);
        let offsets = Arc::new(enc.offsets);
        job.submitted(n, last);
        if n == 0 {
            return;
        }
        // One range: the driver cuts it in chunks as workers have room.
        let chunk = Chunk {
            job: Arc::clone(job),
            fn_off,
            base,
            args,
            offsets,
            lo: 0,
            hi: n,
            chunksize,
            attempts: 0,
        };
        self.shared.post(|inbox| inbox.chunks.push_back(chunk));
    }

    fn submit_all<A, R, C>(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        on_done: Option<OnDone>,
    ) -> Result<Arc<Job>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        C: Call<S, A, R>,
    {
        self.check_open()?;
        if chunksize == Some(0) {
            return Err(PoolError::ZeroChunksize);
        }
        let fn_off = Self::trampoline_offset::<A, R, C>()?;
        let items = items.into_iter();
        // Python's default chunk size needs the length: an input that does
        // not know it is read whole first, as Python's `map` does.
        let (items, len): (Box<dyn Iterator<Item = A>>, usize) = match items.size_hint() {
            (lo, Some(hi)) if lo == hi => (Box::new(items), lo),
            _ => {
                let all: Vec<A> = items.collect();
                let n = all.len();
                (Box::new(all.into_iter()), n)
            }
        };
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(len, self.processes));
        // Posted in batches as they are encoded: the workers start on the
        // first while the caller encodes the next.
        let batch = BATCH.div_ceil(chunksize) * chunksize;
        let job = Job::new(on_done);
        let mut enc = Encoded::with_capacity(batch.min(len));
        let mut base = 0;
        for (i, a) in items.enumerate() {
            enc.push(&a, i)?;
            if enc.len() == batch {
                let bytes = enc.args.len();
                let full = std::mem::replace(&mut enc, Encoded::with_capacity(batch.min(len - i)));
                enc.args.reserve(bytes);
                self.post_batch(&job, fn_off, base, full, chunksize, false);
                base = i + 1;
            }
        }
        self.post_batch(&job, fn_off, base, enc, chunksize, true);
        Ok(job)
    }

    /// Python's `map`: `f` over `items`, results in input order, with
    /// Python's default chunk size.
    ///
    /// # Errors
    ///
    /// The first failed task in input order ([`PoolError::Task`]), or why
    /// the pool could not take the call.
    pub fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, None, None)?;
        crate::job::collect_streaming::<R, _>(&job)
    }

    /// As [`Self::map`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map`], and [`PoolError::ZeroChunksize`].
    pub fn map_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, Some(chunksize), None)?;
        crate::job::collect_streaming::<R, _>(&job)
    }

    /// Python's `map_async`.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Terminated`], an argument that
    /// does not serialise ([`PoolError::Encode`]).
    pub fn map_async<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, None, None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// As [`Self::map_async`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`], and [`PoolError::ZeroChunksize`].
    pub fn map_async_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, Some(chunksize), None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `map_async` with `callback` and `error_callback`: one of
    /// them is called, in the pool's thread, once every task finished.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn map_async_then<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let on_done = then(results::decode_all::<R>, callback, error_callback);
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, None, Some(on_done))?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `starmap`: `f(a, b, ...)` for each tuple `(a, b, ...)`.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn starmap<F, Args, R, M>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, None, None)?;
        crate::job::collect_streaming::<R, _>(&job)
    }

    /// Python's `starmap_async`.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn starmap_async<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, None, None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// As [`Self::starmap_async`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`], and [`PoolError::ZeroChunksize`].
    pub fn starmap_async_chunked<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, Some(chunksize), None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `starmap_async` with `callback` and `error_callback`, called
    /// in the pool's thread once every task finished.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn starmap_async_then<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let on_done = then(results::decode_all::<R>, callback, error_callback);
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, None, Some(on_done))?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `apply`: `f(args...)` on a worker, waiting for the result.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn apply<F, Args, R, M>(&self, f: F, args: Args) -> Result<R, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Python's `apply_async`.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn apply_async<F, Args, R, M>(&self, f: F, args: Args) -> Result<AsyncResult<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>([args], Some(1), None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_one::<R>,
        }))
    }

    /// Python's `apply_async` with `callback` and `error_callback`, called
    /// in the pool's thread.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn apply_async_then<F, Args, R, M>(
        &self,
        f: F,
        args: Args,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let on_done = then(results::decode_one::<R>, callback, error_callback);
        let job = self.submit_all::<Args, R, StarCall<F, M>>([args], Some(1), Some(on_done))?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_one::<R>,
        }))
    }

    /// Python's `imap`: results in input order, as they are ready. The input
    /// is read lazily, a window of tasks ahead of the results (an endless
    /// iterator works); its length is reported by `size_hint` when the
    /// input knows it.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`] (each item carries its own task's error).
    pub fn imap<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, 1, true)
    }

    /// As [`Self::imap`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::imap`], and [`PoolError::ZeroChunksize`].
    pub fn imap_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, chunksize, true)
    }

    /// Python's `imap_unordered`: results as they finish.
    ///
    /// # Errors
    ///
    /// As [`Self::imap`].
    pub fn imap_unordered<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, 1, false)
    }

    /// As [`Self::imap_unordered`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::imap`], and [`PoolError::ZeroChunksize`].
    pub fn imap_unordered_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, chunksize, false)
    }

    fn imap_with<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.check_open()?;
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        let fn_off = Self::trampoline_offset::<A, R, MapCall<F, M>>()?;
        let mut items = items.into_iter();
        let len = match items.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let job = Job::new(None);
        let feed_job = Arc::clone(&job);
        let mut base = 0;
        let feed: Feed<'a> = Box::new(move |room| {
            self.check_open()?;
            let mut enc = Encoded::new();
            let want = room.div_ceil(chunksize) * chunksize;
            for a in items.by_ref().take(want) {
                enc.push(&a, base + enc.len())?;
            }
            let n = enc.len();
            let last = n < want;
            if n > 0 || last {
                self.post_batch(&feed_job, fn_off, base, enc, chunksize, last);
            }
            base += n;
            Ok(n)
        });
        let window = self.processes * (2 * chunksize).max(64);
        Ok(IMap::new(ProcIMap::new(job, feed, window, ordered, len)))
    }

    /// Python's `close`: no more work is taken; the workers exit once the
    /// work already given is done.
    pub fn close(&self) {
        if self
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.shared.post(|inbox| inbox.close = true);
        }
    }

    /// Python's `terminate`: stops the workers now; unfinished calls fail
    /// with [`PoolError::Terminated`].
    pub fn terminate(&self) {
        if self.state.swap(TERMINATED, Ordering::AcqRel) != TERMINATED {
            self.shared.post(|inbox| inbox.terminate = true);
        }
        self.join_driver();
    }

    /// Python's `join`: waits for the workers to exit, after
    /// [`Self::close`] or [`Self::terminate`].
    ///
    /// # Errors
    ///
    /// [`PoolError::NotClosed`] if the pool is still open.
    pub fn join(&self) -> Result<(), PoolError> {
        if self.state.load(Ordering::Acquire) == OPEN {
            return Err(PoolError::NotClosed);
        }
        self.join_driver();
        Ok(())
    }

    fn join_driver(&self) {
        let handle = self
            .driver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl<S: 'static> Drop for Pool<S> {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The completion callback of an `_then` call.
fn then<T: 'static>(
    decode: fn(&State) -> Result<T, PoolError>,
    callback: impl FnOnce(T) + Send + 'static,
    error_callback: impl FnOnce(PoolError) + Send + 'static,
) -> OnDone {
    Box::new(move |st: &State| -> Box<dyn FnOnce()> {
        match decode(st) {
            Ok(v) => Box::new(move || callback(v)),
            Err(e) => Box::new(move || error_callback(e)),
        }
    })
}
