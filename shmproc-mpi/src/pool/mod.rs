//! [`DistPool`]: a `Pool` on every node, fed by one rank through MPI.
//!
//! The rank that calls (`map`, `imap`, `apply_async`, ...) cuts its input
//! into chunks and hands them to its *lanes*: `processes` threads per node,
//! each carrying one chunk at a time to its node (its own node's chunks to
//! its local pool, the others' as MPI requests to their leaders). A lane
//! takes the next chunk as soon as its last one came back, so faster nodes
//! take more. A chunk travels as the code offset of the function that runs
//! it (monomorphised for the task, the same executable on every rank)
//! followed by its items; it comes back as one result per item, so a task
//! that fails fails alone.

mod calls;
mod results;

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_pool::{Pool, StarTask, Task};

use crate::code::conjure;
use crate::world::{MpiError, Request, Shared, World, status, tag};

pub use results::{DistAsyncResult, DistIMap};

/// What a node's leader runs for one chunk: decode the items, run them on
/// its local pool, encode one result per item. Travels as a code offset.
type Entry = fn(&Pool, &[u8]) -> Result<Vec<u8>, String>;

/// One item's outcome, as it travels back.
type Outcome<R> = Result<R, String>;

/// The entry for tasks `F` over `A` giving `R`: monomorphised on the
/// sending rank, found by its code offset on the receiving one (the same
/// executable, checked by [`World::init`]), where `F` (zero-sized: a
/// function or a closure that captures nothing, as the pool requires) is
/// conjured from its type by the pool.
fn entry<F, A, R, M>(pool: &Pool, items: &[u8]) -> Result<Vec<u8>, String>
where
    F: Task<(), A, R, M>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
    M: 'static,
{
    let items: Vec<A> = postcard::from_bytes(items).map_err(|e| e.to_string())?;
    // Python's default chunk size over this node's workers.
    let chunk = items.len().div_ceil(pool.processes().max(1) * 4).max(1);
    let out: Vec<Outcome<R>> = pool
        .imap_chunked(conjure::<F>(), items, chunk)
        .map_err(|e| e.to_string())?
        .map(|r| r.map_err(|e| failure(&e)))
        .collect();
    postcard::to_allocvec(&out).map_err(|e| e.to_string())
}

/// A task's failure as it travels back: its worker, this host, why (the
/// caller knows the task's index in its input).
fn failure(e: &shmproc_pool::PoolError) -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    let host = HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    });
    match e {
        shmproc_pool::PoolError::Task(t) => format!("{} (host {host}): {}", t.worker, t.failure),
        e => format!("host {host}: {e}"),
    }
}

/// `starmap`'s task `F` (called with a tuple's fields) seen as a `map`
/// task over tuples: zero-sized like `F`, so the pool conjures it too.
struct Star<F, M>(PhantomData<fn() -> (F, M)>);

/// The marker of [`Star`]'s `Task` impl.
struct StarMark<M>(PhantomData<fn() -> M>);

impl<F, M> Clone for Star<F, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F, M> Copy for Star<F, M> {}

impl<F, M, Args, R> Task<(), Args, R, StarMark<M>> for Star<F, M>
where
    F: StarTask<(), Args, R, M>,
    M: 'static,
{
    fn run(&self, state: &mut (), args: Args) -> R {
        conjure::<F>().run(state, args)
    }
}

/// A chunk for the lanes: `[entry offset u64][items]`, its index in its
/// call, and where its outcome goes.
struct Job {
    index: usize,
    body: Vec<u8>,
    done: mpsc::Sender<Done>,
}

/// A chunk's outcome: its index and its encoded per-item results.
type Done = (usize, Result<Vec<u8>, MpiError>);

/// A chunk on the caller's side: its number of items and its encoded
/// request (or, gathered, its encoded results).
type Chunk = (usize, Result<Vec<u8>, MpiError>);

/// A pool spanning the job: on each node its leader (the node's lowest
/// rank) runs a local [`Pool`] of worker processes fed through shared
/// memory; the rank that calls [`DistPool::map`] (or `imap`,
/// `apply_async`, ...) runs its own node's share on its local pool and
/// sends the other nodes' shares to their leaders as MPI messages. Python's
/// semantics: `map` and `imap` in input order, `imap_unordered` as tasks
/// finish, `imap` reading its input lazily a window of chunks ahead.
///
/// Made collectively by [`World::pool`]; every rank keeps it until every
/// rank is done (its leaders serve meanwhile), then drops it. A task is a
/// function (or a closure that captures nothing) of this executable: a
/// capturing closure does not compile.
///
/// ```compile_fail
/// fn f(pool: &shmproc_mpi::DistPool) {
///     let k = 3u64;
///     let _ = pool.map(move |x: u64| x * k, 0..10u64); // captures `k`: refused
/// }
/// let _used: fn(&shmproc_mpi::DistPool) = f;
/// ```
///
/// The same without the capture compiles:
///
/// ```no_run
/// fn f(pool: &shmproc_mpi::DistPool) {
///     let _ = pool.map(|x: u64| x * 3, 0..10u64);
/// }
/// let _used: fn(&shmproc_mpi::DistPool) = f;
/// ```
pub struct DistPool {
    shared: Arc<Shared>,
    id: u32,
    /// This node's pool, on its leader.
    local: Option<Arc<Pool>>,
    /// The leader rank of every node.
    leaders: Vec<usize>,
    node: usize,
    processes: usize,
    /// The lanes' work, started at the first call.
    lanes: OnceLock<Mutex<mpsc::Sender<Job>>>,
}

impl std::fmt::Debug for DistPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistPool")
            .field("leaders", &self.leaders)
            .field("local", &self.local.is_some())
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}

impl World {
    /// A pool of `processes` workers on every node (Python's `Pool(n)`,
    /// per node). Every rank calls this, in the same order.
    pub fn pool(&mut self, processes: usize) -> Result<DistPool, MpiError> {
        let id = self.next_id();
        let nodes = self.nodes();
        let leaders: Vec<usize> = (0..nodes)
            .map(|n| (0..self.size()).find(|&r| self.shared.node_of[r] == n).unwrap_or(0))
            .collect();
        let node = self.node();
        let local = if leaders[node] == self.rank() {
            let pool = Arc::new(Pool::new(processes).map_err(|e| MpiError::Message(e.to_string()))?);
            serve(&self.shared, id, Arc::clone(&pool));
            Some(pool)
        } else {
            None
        };
        // Every leader serves before anyone sends it a chunk.
        self.barrier();
        Ok(DistPool {
            shared: Arc::clone(&self.shared),
            id,
            local,
            leaders,
            node,
            processes: processes.max(1),
            lanes: OnceLock::new(),
        })
    }
}

impl DistPool {
    /// Workers over every node: `processes` per node.
    pub fn workers(&self) -> usize {
        self.leaders.len() * self.processes
    }

    /// Tasks finished by this node's pool so far (moves task by task; on
    /// a leader).
    pub fn finished_here(&self) -> u64 {
        self.local.as_ref().map_or(0, |p| p.finished())
    }

    /// This node's pool, or why calls cannot be made here.
    fn caller(&self) -> Result<&Arc<Pool>, MpiError> {
        self.local.as_ref().ok_or(MpiError::Unsupported(
            "a DistPool's calls run on a rank that leads its node (rank 0 does)",
        ))
    }

    /// Hands `body` (chunk `index` of a call) to the lanes; its outcome
    /// goes to `done`.
    fn submit(&self, index: usize, body: Vec<u8>, done: &mpsc::Sender<Done>) -> Result<(), MpiError> {
        let local = Arc::clone(self.caller()?);
        let lanes = self.lanes.get_or_init(|| Mutex::new(self.start_lanes(&local)));
        let job = Job {
            index,
            body,
            done: done.clone(),
        };
        lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| MpiError::Message("the pool's lanes have stopped".into()))
    }

    /// `processes` threads per node, all taking chunks from one channel;
    /// they end when the pool is dropped.
    fn start_lanes(&self, local: &Arc<Pool>) -> mpsc::Sender<Job> {
        let (to_lanes, work) = mpsc::channel::<Job>();
        let work = Arc::new(Mutex::new(work));
        for lane in 0..self.workers() {
            let node = lane % self.leaders.len();
            let to = (node != self.node).then_some(self.leaders[node]);
            let (work, shared, local, id) = (Arc::clone(&work), Arc::clone(&self.shared), Arc::clone(local), self.id);
            let run = move || {
                loop {
                    let next = work.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = next else { return };
                    let out = match to {
                        None => run_chunk(&local, &job.body).map_err(|why| MpiError::Refused {
                            owner: shared.rank,
                            why,
                        }),
                        Some(leader) => shared
                            .ask(leader, tag::CHUNK, &job.body, id)
                            .and_then(|reply| status(leader, reply)),
                    };
                    let _ = job.done.send((job.index, out));
                }
            };
            if let Err(e) = std::thread::Builder::new().name("shmproc-mpi-lane".into()).spawn(run) {
                tracing::warn!(error = %e, "cannot start a lane of the pool");
            }
        }
        to_lanes
    }
}

/// The leader's thread for pool `id`: runs each chunk sent to it on the
/// local pool and replies with the results (or why not).
fn serve(shared: &Arc<Shared>, id: u32, pool: Arc<Pool>) {
    let (to_serve, requests) = mpsc::channel::<Request>();
    shared.serve(id, shared.forward(to_serve));
    let s = Arc::clone(shared);
    let started = std::thread::Builder::new()
        .name("shmproc-mpi-pool".into())
        .spawn(move || {
            // A thread per chunk: the sender keeps one chunk in flight per
            // worker of this node, and the pool takes calls from threads.
            for r in requests {
                let (from, reply_tag) = (r.from, r.reply_tag);
                if r.kind != tag::CHUNK {
                    s.reply(from, reply_tag, Err("not a request a pool takes"));
                    continue;
                }
                let (s2, pool) = (Arc::clone(&s), Arc::clone(&pool));
                let run = move || match run_chunk(&pool, &r.body) {
                    Ok(bytes) => s2.reply(r.from, r.reply_tag, Ok(&bytes)),
                    Err(why) => s2.reply(r.from, r.reply_tag, Err(&why)),
                };
                if let Err(e) = std::thread::Builder::new().name("shmproc-mpi-chunk".into()).spawn(run) {
                    s.reply(
                        from,
                        reply_tag,
                        Err(&format!("cannot start a thread for the chunk: {e}")),
                    );
                }
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the pool's serving thread");
    }
}

/// `[entry's code offset u64][items]`: resolves the entry inside this
/// executable's code and runs it.
fn run_chunk(pool: &Pool, body: &[u8]) -> Result<Vec<u8>, String> {
    let (addr, items) = crate::code::split(body)?;
    // SAFETY: `addr` lies inside this executable's code (checked above),
    // and every rank runs this very executable (checked by `World::init`
    // over MPI, which only the job's ranks can reach): the sender took the
    // offset of an `entry::<F, A, R, M>`, an `Entry`, at the same place.
    let f = unsafe { std::mem::transmute::<usize, Entry>(addr) };
    f(pool, items)
}
