//! [`PoolBuilder`]: Python's `Pool(...)` arguments, and how workers start.

use crate::sync::atomic::AtomicU8;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use shmproc_collections::bytes;
use shmproc_core::{Context, Process, StartMethod};

use crate::auth::Key;
use crate::bell::Bell;
use crate::driver::{Config, Driver, Shared, Worker};
use crate::error::PoolError;

use crate::worker::{self, Initializer};

use super::{OPEN, Pool};

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
    /// [`RawArray`](shmproc_core::RawArray) to share large data without copies).
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
        let n = self.processes.unwrap_or_else(shmproc_core::cpu_count);
        if n == 0 {
            return Err(PoolError::NoWorkers);
        }
        let method = self.method.unwrap_or_else(shmproc_core::get_start_method);
        let key = Key::random().map_err(|e| PoolError::Thread(format!("no random key: {e}")))?;
        let bell = Bell::new(n)?;
        let shared = Arc::new(Shared::new(bell.clone(), n));
        let mut starter = Starter::<S, IA, I> {
            key,
            bell,
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
            .name("shmproc-pool".into())
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
