//! The pool's driver thread: it hands chunks of tasks to the workers'
//! rings, reads their results into the calls' jobs, notices deaths and
//! overdue tasks, and replaces workers.
//!
//! Only this thread touches the workers' rings and processes, so their
//! state needs no lock; callers talk to it through the inbox and the
//! doorbell.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shmproc_collections::bytes::{ByteConsumer, ByteProducer};
use shmproc_core::{Process, TryRecvError, TrySendError};

use crate::auth::Key;
use crate::bell::Bell;
use crate::error::{Exit, PoolError, TaskFailure};
use crate::job::{Abort, Frame, Job};
use crate::wire::{self, Reader};

mod dispatch;
mod life;

/// Tasks of one call, sharing one buffer of encoded arguments: tasks
/// `lo .. hi` of the batch, whose arguments are
/// `args[offsets[i] .. offsets[i + 1]]`, and whose indices in the call are
/// `base + i`.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub(crate) job: Arc<Job>,
    pub(crate) fn_off: u64,
    pub(crate) base: usize,
    pub(crate) args: Arc<Vec<u8>>,
    pub(crate) offsets: Arc<Vec<u32>>,
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    /// The call's chunk size: tasks go to a worker in multiples of it.
    pub(crate) chunksize: usize,
    /// Times its tasks were tried already (`retries`).
    pub(crate) attempts: u32,
}

impl Chunk {
    fn len(&self) -> usize {
        self.hi - self.lo
    }

    /// Splits off the tasks from `at` on (`lo < at < hi`).
    fn split_off(&mut self, at: usize) -> Self {
        let mut rest = self.clone();
        rest.lo = at;
        self.hi = at;
        rest
    }

    fn sub(&self, lo: usize, hi: usize) -> Self {
        let mut c = self.clone();
        c.lo = lo;
        c.hi = hi;
        c
    }

    /// Fails every task of the chunk with `failure`.
    fn fail(&self, worker: &Arc<str>, failure: &TaskFailure) {
        let n = u32::try_from(self.len()).expect("a chunk holds fewer than 2^32 tasks");
        self.job.deliver(Frame {
            first: self.base + self.lo,
            n: self.len(),
            worker: Arc::clone(worker),
            bytes: wire::failures(n, failure),
            skip: 0,
        });
    }
}

/// What callers leave for the driver.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) chunks: VecDeque<Chunk>,
    pub(crate) close: bool,
    pub(crate) terminate: bool,
}

/// What the pool's handle and its driver share.
#[derive(Debug)]
pub(crate) struct Shared {
    inbox: Mutex<Inbox>,
    mail: AtomicBool,
    pub(crate) bell: Bell,
    /// Tasks whose results arrived.
    pub(crate) finished: AtomicU64,
    /// Progress reported: never goes back.
    pub(crate) shown: AtomicU64,
    /// Why the pool takes no more work, once it does not.
    pub(crate) broken: Mutex<Option<Abort>>,
    /// Every first worker ran its initializer.
    pub(crate) ready: AtomicBool,
    /// The watcher saw a worker's pidfd become readable (it ended).
    death: AtomicBool,
    /// The driver ended: the watcher stops.
    pub(crate) stop: AtomicBool,
    /// Pidfds of the live workers, for the watcher.
    pidfds: Mutex<Vec<OwnedFd>>,
    /// Pids and names of the live workers (for callers that watch them).
    pub(crate) workers: Mutex<Vec<(u32, String)>>,
    /// Per slot: tasks credited through done frames, and tasks in flight
    /// (for progress inside chunks).
    credit: Vec<(AtomicU64, AtomicU64)>,
}

impl Shared {
    pub(crate) fn new(bell: Bell, slots: usize) -> Self {
        Self {
            inbox: Mutex::new(Inbox::default()),
            mail: AtomicBool::new(false),
            bell,
            finished: AtomicU64::new(0),
            shown: AtomicU64::new(0),
            broken: Mutex::new(None),
            ready: AtomicBool::new(false),
            death: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            pidfds: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            credit: (0..slots).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
        }
    }

    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leaves `f`'s changes to the inbox for the driver and wakes it.
    pub(crate) fn post(&self, f: impl FnOnce(&mut Inbox)) {
        f(&mut self.inbox());
        // Release: pairs with the driver's Acquire swap.
        self.mail.store(true, Ordering::Release);
        self.bell.ring();
    }

    pub(crate) fn broken(&self) -> Option<Abort> {
        self.broken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Tasks finished, counting those finished inside chunks still running.
    pub(crate) fn progress(&self) -> u64 {
        // Relaxed: counters for display; made monotonic below.
        let mut n = self.finished.load(Ordering::Relaxed);
        for (slot, (credited, in_flight)) in self.credit.iter().enumerate() {
            let said = self.bell.finished(slot);
            let extra = said.saturating_sub(credited.load(Ordering::Relaxed));
            n += extra.min(in_flight.load(Ordering::Relaxed));
        }
        self.shown.fetch_max(n, Ordering::Relaxed).max(n)
    }
}

/// Starts a worker in a slot: made by the pool with its types.
pub(crate) type Spawn = Box<dyn FnMut(usize) -> Result<Worker, PoolError> + Send>;

/// A worker as the driver sees it.
pub(crate) struct Worker {
    pub(crate) slot: usize,
    pub(crate) name: Arc<str>,
    pub(crate) process: Process,
    pub(crate) tasks: ByteProducer,
    pub(crate) results: ByteConsumer,
    /// Functions registered with it (ids `0 .. registered`).
    pub(crate) registered: u32,
    pub(crate) in_flight: VecDeque<InFlight>,
    pub(crate) tasks_in_flight: usize,
    /// Tasks it may still be sent (maxtasksperchild), if limited.
    pub(crate) budget: Option<u64>,
    pub(crate) ready: bool,
    /// The task it was last seen running, and since when (task timeout).
    pub(crate) running: Option<(u64, Instant)>,
    /// Seconds a task takes on it, smoothed (sizes its window).
    pub(crate) task_secs: f64,
    pub(crate) last_done: Instant,
    /// Killed for an overdue task: that task's seq.
    pub(crate) overdue: Option<u64>,
    pub(crate) stopping: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A chunk sent to a worker: its tasks have seqs `first_seq ..`, of which
/// the first `reported` have results.
#[derive(Debug)]
pub(crate) struct InFlight {
    chunk: Chunk,
    first_seq: u64,
    reported: usize,
}

/// How the driver is set up.
pub(crate) struct Config {
    pub(crate) slots: usize,
    pub(crate) key: Key,
    pub(crate) retries: u32,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) spawn: Spawn,
}

/// Consecutive deaths of a slot's worker in its initializer (by a signal)
/// after which the pool gives up: an initializer that crashes is not
/// restarted in a loop.
const INIT_STRIKES: u32 = 3;
/// As [`INIT_STRIKES`], for workers killed (SIGKILL, SIGTERM) while they
/// start: someone else's doing, so given more chances, still finitely many.
const KILLED_STRIKES: u32 = 50;
/// How long the driver polls before it sleeps on the doorbell.
const SPIN: Duration = Duration::from_micros(50);
/// How much queued work a worker is given, in time: enough that it never
/// waits for the driver, little enough that work stays balanced.
const QUEUED_WORK: f64 = 500e-6;
/// The most tasks in flight on one worker.
const MAX_WINDOW: usize = 16384;

pub(crate) struct Driver {
    shared: Arc<Shared>,
    cfg: Config,
    workers: Vec<Option<Worker>>,
    init_strikes: Vec<u32>,
    pending: VecDeque<Chunk>,
    fn_ids: HashMap<u64, u32>,
    fn_offs: Vec<u64>,
    next_seq: u64,
    next_check: Instant,
    closing: bool,
    /// The watcher thread and the stream whose closing stops it.
    watcher: Option<(std::os::unix::net::UnixStream, std::thread::JoinHandle<()>)>,
    buf: Vec<u8>,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, cfg: Config, workers: Vec<Worker>) -> Self {
        let slots = cfg.slots;
        let mut ws: Vec<Option<Worker>> = (0..slots).map(|_| None).collect();
        for w in workers {
            let slot = w.slot;
            ws[slot] = Some(w);
        }
        let me = Self {
            shared,
            cfg,
            workers: ws,
            init_strikes: vec![0; slots],
            pending: VecDeque::new(),
            fn_ids: HashMap::new(),
            fn_offs: Vec::new(),
            next_seq: 0,
            next_check: Instant::now(),
            closing: false,
            watcher: None,
            buf: Vec::new(),
        };
        me.publish_workers();
        me
    }

    fn publish_workers(&self) {
        let list = self
            .workers
            .iter()
            .flatten()
            .map(|w| (w.process.pid().unwrap_or(0), w.name.to_string()))
            .collect();
        let fds = self
            .workers
            .iter()
            .flatten()
            .filter_map(|w| w.process.pidfd())
            .collect();
        *self
            .shared
            .pidfds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fds;
        *self
            .shared
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = list;
    }

    /// Runs until the pool is closed and drained, or terminated.
    pub(crate) fn run(mut self) {
        self.start_watcher();
        let mut idle_since: Option<Instant> = None;
        loop {
            // Acquire: pairs with the watcher's Release store.
            if self.shared.death.swap(false, Ordering::Acquire) {
                self.next_check = Instant::now();
            }
            let mut progress = self.take_mail();
            if self.shared.inbox().terminate {
                self.terminate(Abort::Terminated);
                return;
            }
            progress |= self.read_results();
            if Instant::now() >= self.next_check {
                progress |= self.check_workers();
                self.next_check = Instant::now() + self.check_every();
            }
            progress |= self.dispatch();
            if self.closing && self.pending.is_empty() && self.all_idle() {
                self.stop_workers();
                return;
            }
            if progress {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < SPIN && self.expects_soon() {
                for _ in 0..4 {
                    std::hint::spin_loop();
                }
                std::thread::yield_now();
                continue;
            }
            let timeout = self.next_check.saturating_duration_since(Instant::now());
            let shared = Arc::clone(&self.shared);
            shared.bell.sleep(timeout, || {
                // Relaxed: a hint; the swap in `take_mail` orders.
                self.shared.mail.load(Ordering::Relaxed)
                    || self.shared.death.load(Ordering::Relaxed)
                    || self.read_results()
            });
            idle_since = None;
        }
    }

    /// Starts the watcher thread; without one, the periodic check still
    /// notices deaths, only later.
    fn start_watcher(&mut self) {
        let (tx, rx) = match std::os::unix::net::UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("pool: no watcher ({e}); deaths are noticed at the periodic check");
                return;
            }
        };
        let shared = Arc::clone(&self.shared);
        match std::thread::Builder::new()
            .name("shmproc-pool-watch".into())
            .spawn(move || watch(&shared, &rx))
        {
            Ok(h) => self.watcher = Some((tx, h)),
            Err(e) => tracing::warn!("pool: no watcher thread ({e}); deaths are noticed at the periodic check"),
        }
    }

    /// Whether something is likely to come within a spin: a quick task's
    /// result, or (the pool being idle) the caller's next call. While every
    /// busy worker runs long tasks, spinning would only take a core from
    /// them.
    fn expects_soon(&self) -> bool {
        let busy: Vec<&Worker> = self
            .workers
            .iter()
            .flatten()
            .filter(|w| w.tasks_in_flight > 0)
            .collect();
        busy.is_empty() || busy.iter().any(|w| w.task_secs < SPIN.as_secs_f64() * 4.0)
    }

    fn check_every(&self) -> Duration {
        let slice = shmproc_core::LIVENESS_SLICE / 4;
        self.cfg
            .task_timeout
            .map_or(slice, |t| slice.min(t / 4).max(Duration::from_millis(1)))
    }

    fn all_idle(&self) -> bool {
        self.workers.iter().flatten().all(|w| w.in_flight.is_empty())
    }

    /// Takes what callers posted.
    fn take_mail(&mut self) -> bool {
        // Acquire: pairs with the Release store of `post`.
        if !self.shared.mail.swap(false, Ordering::Acquire) {
            return false;
        }
        let mut inbox = self.shared.inbox();
        let got = !inbox.chunks.is_empty();
        if let Some(why) = self.shared.broken() {
            for c in inbox.chunks.drain(..) {
                c.job.abort(why.clone());
            }
        }
        self.pending.extend(inbox.chunks.drain(..));
        self.closing |= inbox.close;
        got || inbox.close || inbox.terminate
    }

    /// Reads every worker's results.
    fn read_results(&mut self) -> bool {
        let mut any = false;
        for slot in 0..self.workers.len() {
            while let Some(w) = self.workers[slot].as_mut() {
                match w.results.try_recv(&mut self.buf) {
                    Ok(()) => {
                        any = true;
                        if let Err(why) = self.on_frame(slot) {
                            self.condemn(slot, &why);
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        any |= self.on_death(slot);
                        break;
                    }
                    Err(e) => {
                        self.condemn(slot, &format!("its result ring failed: {e}"));
                        break;
                    }
                }
            }
        }
        any
    }

    /// Handles the frame in `buf` from the worker in `slot`; an error for a
    /// frame the worker should never send.
    fn on_frame(&mut self, slot: usize) -> Result<(), String> {
        let w = self.workers[slot].as_mut().expect("a live slot");
        let mut r = Reader::new(&self.buf);
        match r.u8() {
            Some(wire::READY) => {
                w.ready = true;
                self.init_strikes[slot] = 0;
                if self.workers.iter().flatten().all(|w| w.ready) {
                    // Release: pairs with the Acquire load of `wait_ready`.
                    self.shared.ready.store(true, Ordering::Release);
                }
                Ok(())
            }
            Some(wire::INIT_FAILED) => {
                let cause = String::from_utf8_lossy(r.rest()).into_owned();
                let worker = w.name.to_string();
                self.terminate(Abort::Initializer { worker, cause });
                Ok(())
            }
            Some(wire::DONE) => {
                let (Some(first_seq), Some(n), Some(busy_ns)) = (r.u64(), r.u32(), r.u64()) else {
                    return Err("a short done frame".into());
                };
                let n = n as usize;
                let Some(front) = w.in_flight.front_mut() else {
                    return Err("results with no task in flight".into());
                };
                let expect = front.first_seq + front.reported as u64;
                if first_seq != expect || n == 0 || n > front.chunk.len() - front.reported {
                    return Err(format!(
                        "results for tasks {first_seq}..+{n}, expected {expect}..+{} at most",
                        front.chunk.len() - front.reported
                    ));
                }
                let first = front.chunk.base + front.chunk.lo + front.reported;
                // The frame goes to the job as it is, head and all.
                let bytes = std::mem::take(&mut self.buf);
                front.chunk.job.deliver(Frame {
                    first,
                    n,
                    worker: Arc::clone(&w.name),
                    bytes,
                    skip: wire::DONE_HEAD,
                });
                front.reported += n;
                if front.reported == front.chunk.len() {
                    w.in_flight.pop_front();
                }
                w.tasks_in_flight -= n;
                if w.budget == Some(0) && w.in_flight.is_empty() {
                    // It exits now: replace it without waiting for a check.
                    self.next_check = Instant::now();
                }
                #[allow(clippy::cast_precision_loss, reason = "nanoseconds and a count, far below 2^52")]
                let per_task = busy_ns as f64 * 1e-9 / n as f64;
                w.task_secs = if w.task_secs > 0.0 {
                    0.8 * w.task_secs + 0.2 * per_task
                } else {
                    per_task
                };
                w.last_done = Instant::now();
                w.running = None;
                let (credited, in_flight) = &self.shared.credit[slot];
                // Relaxed: progress counters (see `Shared::progress`).
                credited.fetch_add(n as u64, Ordering::Relaxed);
                in_flight.store(w.tasks_in_flight as u64, Ordering::Relaxed);
                self.shared.finished.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            _ => Err("an unknown frame".into()),
        }
    }
}

/// The watcher thread: waits on the workers' pidfds and wakes the driver
/// as soon as one ends, so a death is noticed in microseconds rather than
/// at the next check (which still catches what the watcher misses: a worker
/// started since it last read the list).
pub(crate) fn watch(shared: &Shared, stop: &std::os::unix::net::UnixStream) {
    // Acquire: pairs with the Release store of `stop` by the driver.
    while !shared.stop.load(Ordering::Acquire) {
        if shared.death.load(Ordering::Acquire) {
            // The driver has not handled the last one yet.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let fds: Vec<OwnedFd> = shared
            .pidfds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|f| f.try_clone().ok())
            .collect();
        // The first descriptor turns readable (end of stream) when the
        // driver ends: the watcher leaves at once, so the pool's end leaves
        // no thread behind (a fork start right after needs a lone thread).
        let borrowed: Vec<BorrowedFd<'_>> = std::iter::once(stop.as_fd())
            .chain(fds.iter().map(AsFd::as_fd))
            .collect();
        let ready = shmproc_core::sys::poll_readable(&borrowed, Some(WATCH_SLICE)).unwrap_or_default();
        if ready.first().copied().unwrap_or(false) {
            return;
        }
        let ended = ready.iter().skip(1).any(|&e| e);
        if ended {
            // Release: pairs with the driver's Acquire swap.
            shared.death.store(true, Ordering::Release);
            shared.bell.ring();
        }
    }
}

/// How long the watcher waits before it reads the list of workers again.
const WATCH_SLICE: Duration = Duration::from_millis(50);

impl Drop for Driver {
    /// Normally everything is done by now. If the driver's thread panicked
    /// (a bug), this runs during the unwinding: it fails what is pending,
    /// stops the workers and marks the pool broken, so no caller waits
    /// forever on a pool without a driver.
    fn drop(&mut self) {
        let unfinished = !self.pending.is_empty()
            || self.workers.iter().flatten().any(|w| !w.in_flight.is_empty())
            || !self.shared.inbox().chunks.is_empty();
        if unfinished || std::thread::panicking() {
            self.terminate(Abort::Terminated);
        }
        // Release: pairs with the watcher's Acquire load. Closing our end
        // of its stop stream wakes it; it is joined so that no thread of
        // the pool outlives it.
        self.shared.stop.store(true, Ordering::Release);
        if let Some((tx, h)) = self.watcher.take() {
            drop(tx);
            let _ = h.join();
        }
    }
}
