//! [`Pool`]: the handle, and how a call becomes chunks for the driver.

use crate::sync::atomic::{AtomicU8, Ordering};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::driver::{Chunk, Shared};
use crate::error::PoolError;
use crate::job::{Job, OnDone, State};
use crate::results::{Feed, IMap, ProcIMap};
use crate::task::{self, Call, MapCall, Task, Trampoline};

mod builder;
mod calls;

pub use builder::{NoInit, PoolBuilder, SharedInput};

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
        // first while the caller encodes the next. A batch is not a whole
        // number of chunks: the driver cuts chunks by each worker's window
        // anyway (Python's chunk size is approximate), and with Python's
        // default of a quarter of each worker's share, whole chunks made
        // the workers wait for an eighth of the input to be encoded.
        let batch = BATCH;
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
        let mut it = ProcIMap::new(job, feed, window, ordered, len);
        it.top_up()?;
        Ok(IMap::new(it))
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
