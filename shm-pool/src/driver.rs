//! The pool's driver thread: it hands chunks of tasks to the workers'
//! rings, reads their results into the calls' jobs, notices deaths and
//! overdue tasks, and replaces workers.
//!
//! Only this thread touches the workers' rings and processes, so their
//! state needs no lock; callers talk to it through the inbox and the
//! doorbell.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shm_collections::bytes::{ByteConsumer, ByteProducer};
use shm_core::{Process, TryRecvError, TrySendError};

use crate::auth::Key;
use crate::bell::Bell;
use crate::error::{Exit, PoolError, TaskFailure};
use crate::job::{Abort, Frame, Job};
use crate::wire::{self, Reader};

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
/// How long the driver polls before it sleeps on the doorbell.
const SPIN: Duration = Duration::from_micros(50);
/// How much queued work a worker is given, in time: enough that it never
/// waits for the driver, little enough that work stays balanced.
const QUEUED_WORK: f64 = 200e-6;
/// The most tasks in flight on one worker.
const MAX_WINDOW: usize = 4096;

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
    buf: Vec<u8>,
    frame: Vec<u8>,
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
            buf: Vec::new(),
            frame: Vec::new(),
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
        *self
            .shared
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = list;
    }

    /// Runs until the pool is closed and drained, or terminated.
    pub(crate) fn run(mut self) {
        let mut idle_since: Option<Instant> = None;
        loop {
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
            if since.elapsed() < SPIN {
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
                self.shared.mail.load(Ordering::Relaxed) || self.read_results()
            });
            idle_since = None;
        }
    }

    fn check_every(&self) -> Duration {
        let slice = shm_core::LIVENESS_SLICE / 4;
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
                let bytes = self.buf.split_off(wire::DONE_HEAD);
                front.chunk.job.deliver(Frame {
                    first,
                    n,
                    worker: Arc::clone(&w.name),
                    bytes,
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

    /// A worker broke the protocol (a scribbled ring): kill it and handle
    /// its death.
    fn condemn(&mut self, slot: usize, why: &str) {
        if let Some(w) = self.workers[slot].as_ref() {
            tracing::warn!(worker = %w.name, "pool worker killed: {why}");
            let _ = w.process.kill();
            let _ = w.process.join_timeout(shm_core::LIVENESS_SLICE);
        }
        self.on_death(slot);
    }

    /// Checks that the workers live, and kills one whose task is overdue.
    fn check_workers(&mut self) -> bool {
        let mut any = false;
        for slot in 0..self.workers.len() {
            let Some(w) = self.workers[slot].as_mut() else {
                continue;
            };
            if !w.process.is_alive() {
                any |= self.on_death(slot);
                continue;
            }
            let Some(limit) = self.cfg.task_timeout else { continue };
            let now = Instant::now();
            match self.shared.bell.running(slot) {
                Some(seq) if w.running.is_none_or(|(s, _)| s != seq) => w.running = Some((seq, now)),
                Some(seq) => {
                    let since = w.running.map_or(now, |(_, t)| t);
                    if now.duration_since(since) > limit && w.overdue.is_none() {
                        w.overdue = Some(seq);
                        let _ = w.process.kill();
                    }
                }
                None => w.running = None,
            }
        }
        any
    }

    /// Handles the end of the worker in `slot`: takes its last results,
    /// fails or retries the task it ran, hands its other tasks back, and
    /// starts a replacement.
    fn on_death(&mut self, slot: usize) -> bool {
        // Results it sent before it died count.
        let _ = self.drain(slot);
        let Some(mut w) = self.workers[slot].take() else {
            return false;
        };
        let code = if let Ok(Some(code)) = w.process.join_timeout(shm_core::LIVENESS_SLICE) {
            Some(code)
        } else {
            let _ = w.process.kill();
            w.process.join_timeout(shm_core::LIVENESS_SLICE).ok().flatten()
        };
        let exit = Exit::from_code(code);
        let retiring = w.budget == Some(0) && w.in_flight.is_empty() && exit == Exit::Code(0);
        if !w.ready && !retiring && !w.stopping {
            self.init_strikes[slot] += 1;
            let deliberate = matches!(exit, Exit::Code(_));
            if deliberate || self.init_strikes[slot] >= INIT_STRIKES {
                let cause = if exit == Exit::Code(crate::worker::INIT_FAILED) {
                    "the initializer panicked".to_owned()
                } else {
                    format!("the worker ended in its initializer ({exit})")
                };
                self.workers[slot] = Some(w);
                self.terminate(Abort::Initializer {
                    worker: self.workers[slot]
                        .as_ref()
                        .map(|w| w.name.to_string())
                        .unwrap_or_default(),
                    cause,
                });
                return true;
            }
        }
        let running = self.shared.bell.running(slot);
        let failure = match w.overdue {
            Some(_) => TaskFailure::TimedOut(self.cfg.task_timeout.unwrap_or_default()),
            None => TaskFailure::WorkerDied(exit),
        };
        let mut back: Vec<Chunk> = Vec::new();
        for f in w.in_flight.drain(..) {
            let mut chunk = f.chunk;
            chunk.lo += f.reported;
            let first_seq = f.first_seq + f.reported as u64;
            let culprit = running
                .filter(|&s| s >= first_seq && s < first_seq + chunk.len() as u64)
                .map(|s| chunk.lo + usize::try_from(s - first_seq).expect("within the chunk"));
            let Some(at) = culprit else {
                back.push(chunk);
                continue;
            };
            if at > chunk.lo {
                back.push(chunk.sub(chunk.lo, at));
            }
            let mut one = chunk.sub(at, at + 1);
            if one.attempts < self.cfg.retries {
                one.attempts += 1;
                back.push(one);
            } else {
                one.fail(&w.name, &failure);
            }
            if at + 1 < chunk.hi {
                back.push(chunk.sub(at + 1, chunk.hi));
            }
        }
        for c in back.into_iter().rev() {
            self.pending.push_front(c);
        }
        let (_, in_flight) = &self.shared.credit[slot];
        in_flight.store(0, Ordering::Relaxed);
        if !w.stopping && self.shared.broken().is_none() {
            tracing::debug!(worker = %w.name, %exit, "pool worker ended; replacing it");
            self.replace(slot);
        }
        self.publish_workers();
        true
    }

    /// Reads what a dead worker's ring still holds.
    fn drain(&mut self, slot: usize) -> bool {
        let mut any = false;
        loop {
            let Some(w) = self.workers[slot].as_mut() else {
                return any;
            };
            match w.results.try_recv(&mut self.buf) {
                Ok(()) => {
                    any = true;
                    if self.on_frame(slot).is_err() {
                        return any;
                    }
                }
                Err(_) => return any,
            }
        }
    }

    /// Starts a worker in `slot`; a failure to start breaks the pool.
    fn replace(&mut self, slot: usize) {
        self.shared.bell.reset(slot);
        let (credited, _) = &self.shared.credit[slot];
        credited.store(0, Ordering::Relaxed);
        match (self.cfg.spawn)(slot) {
            Ok(w) => self.workers[slot] = Some(w),
            Err(e) => {
                self.terminate(Abort::Initializer {
                    worker: format!("a new worker for slot {slot}"),
                    cause: e.to_string(),
                });
            }
        }
    }

    /// How many tasks worker `w` may have in flight: about
    /// [`QUEUED_WORK`] of its tasks, once their time is known; the call's
    /// chunk size before (as Python hands out chunks). The chunk size is
    /// Python's "approximate" one: a long chunk of quick tasks is cut, so
    /// that results flow back while the rest runs.
    fn window(w: &Worker, chunk: usize) -> usize {
        if w.task_secs > 0.0 {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a positive ratio, clamped below; `as` saturates"
            )]
            let n = (QUEUED_WORK / w.task_secs) as usize;
            n.clamp(1, MAX_WINDOW)
        } else {
            chunk.clamp(1, MAX_WINDOW)
        }
    }

    /// Hands pending tasks to workers: each time to the worker with the
    /// fewest tasks in flight (the one that last finished, among equals: it
    /// is awake), as many as its window holds and its share of what is
    /// pending.
    fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(front) = self.pending.front() {
            let chunksize = front.chunksize.max(1);
            let pending: usize = self.pending.iter().map(Chunk::len).sum();
            let workers = self.workers.iter().flatten().filter(|w| !w.stopping).count().max(1);
            let mut best: Option<(usize, usize)> = None;
            for (slot, w) in self.workers.iter().enumerate() {
                let Some(w) = w else { continue };
                if w.stopping || w.budget == Some(0) {
                    continue;
                }
                let room = Self::window(w, chunksize).saturating_sub(w.tasks_in_flight);
                if room == 0 {
                    continue;
                }
                let better = best.is_none_or(|(b, _)| {
                    let bw = self.workers[b].as_ref().expect("a live slot");
                    (w.tasks_in_flight, std::cmp::Reverse(w.last_done))
                        < (bw.tasks_in_flight, std::cmp::Reverse(bw.last_done))
                });
                if better {
                    best = Some((slot, room));
                }
            }
            let Some((slot, room)) = best else {
                return any;
            };
            // Its room, half its window (so that one batch waits while
            // the other runs), and no more than its share.
            let half = Self::window(self.workers[slot].as_ref().expect("a live slot"), chunksize).div_ceil(2);
            let take = room.min(half).min(pending.div_ceil(workers)).max(1);
            if !self.send_to(slot, take) {
                return any;
            }
            any = true;
        }
        any
    }

    /// Sends up to `take` tasks from the front pending chunk (no more than
    /// the worker's budget allows) to the worker in `slot`; false if its
    /// ring is full.
    fn send_to(&mut self, slot: usize, take: usize) -> bool {
        let Some(mut chunk) = self.pending.pop_front() else {
            return false;
        };
        let fn_id = if let Some(&id) = self.fn_ids.get(&chunk.fn_off) {
            id
        } else {
            let id = u32::try_from(self.fn_offs.len()).expect("fewer than 2^32 task functions");
            self.fn_ids.insert(chunk.fn_off, id);
            self.fn_offs.push(chunk.fn_off);
            id
        };
        let w = self.workers[slot].as_mut().expect("a live slot");
        let budget = w
            .budget
            .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX));
        let take = take.min(budget).min(chunk.len());
        if take < chunk.len() {
            let rest = chunk.split_off(chunk.lo + take);
            self.pending.push_front(rest);
        }
        while w.registered <= fn_id {
            let id = w.registered;
            let off = self.fn_offs[id as usize];
            let reg = wire::register_frame(id, off, self.cfg.key.tag(id, off));
            if w.tasks.try_send(&reg).is_err() {
                self.pending.push_front(chunk);
                return false;
            }
            w.registered += 1;
        }
        let first_seq = self.next_seq;
        let offsets = &chunk.offsets[chunk.lo..=chunk.hi];
        wire::chunk_frame(&mut self.frame, first_seq, fn_id, offsets, &chunk.args);
        if self.frame.len() > w.tasks.max_frame() {
            if chunk.len() > 1 {
                let mid = chunk.lo + chunk.len() / 2;
                let rest = chunk.split_off(mid);
                self.pending.push_front(rest);
                self.pending.push_front(chunk);
                return true;
            }
            let len = (offsets[1] - offsets[0]) as usize;
            let max = w.tasks.max_frame().saturating_sub(wire::CHUNK_HEAD + 8);
            chunk.fail(
                &w.name,
                &TaskFailure::TooLarge {
                    what: "argument".into(),
                    len,
                    max,
                },
            );
            return true;
        }
        match w.tasks.try_send(&self.frame) {
            Ok(()) => {
                let n = chunk.len();
                self.next_seq += n as u64;
                w.tasks_in_flight += n;
                if let Some(b) = w.budget.as_mut() {
                    *b -= n as u64;
                }
                let (_, in_flight) = &self.shared.credit[slot];
                in_flight.store(w.tasks_in_flight as u64, Ordering::Relaxed);
                w.in_flight.push_back(InFlight {
                    chunk,
                    first_seq,
                    reported: 0,
                });
                true
            }
            Err(TrySendError::Full(())) => {
                self.pending.push_front(chunk);
                false
            }
            Err(_) => {
                // The worker is gone or its ring broken: its death is
                // handled at the next check.
                self.pending.push_front(chunk);
                self.next_check = Instant::now();
                false
            }
        }
    }

    /// Gives up: fails every call's unfinished tasks with `why`, kills the
    /// workers.
    fn terminate(&mut self, why: Abort) {
        {
            let mut b = self
                .shared
                .broken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if b.is_none() {
                *b = Some(why.clone());
            }
        }
        for c in self.pending.drain(..) {
            c.job.abort(why.clone());
        }
        for c in self.shared.inbox().chunks.drain(..) {
            c.job.abort(why.clone());
        }
        for w in self.workers.iter_mut().flatten() {
            for f in w.in_flight.drain(..) {
                f.chunk.job.abort(why.clone());
            }
            w.stopping = true;
            let _ = w.process.terminate();
        }
        for w in self.workers.iter().flatten() {
            if !matches!(w.process.join_timeout(Duration::from_secs(1)), Ok(Some(_))) {
                let _ = w.process.kill();
                let _ = w.process.join_timeout(Duration::from_secs(1));
            }
        }
        for w in &mut self.workers {
            *w = None;
        }
        self.publish_workers();
    }

    /// Asks every worker to exit, and waits for them.
    fn stop_workers(&mut self) {
        for w in self.workers.iter_mut().flatten() {
            w.stopping = true;
            let _ = w.tasks.send_timeout(&[wire::STOP], Duration::from_secs(1));
        }
        for w in self.workers.iter().flatten() {
            if !matches!(w.process.join_timeout(Duration::from_secs(5)), Ok(Some(_))) {
                let _ = w.process.kill();
                let _ = w.process.join_timeout(Duration::from_secs(1));
            }
        }
        for w in &mut self.workers {
            *w = None;
        }
        self.publish_workers();
    }
}

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
    }
}
