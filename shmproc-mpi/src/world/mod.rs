//! [`World`]: the ranks of the job, which of them share a node, and the
//! engine through which each rank makes every MPI call after start-up.
//!
//! # One engine per rank
//!
//! Every MPI call after [`World::init`] goes through the rank's engine,
//! one thread at a time (so `MPI_THREAD_SERIALIZED` is enough, and no MPI
//! library's thread-multiple paths are relied on): it sends what the
//! process's threads hand it, takes what arrives without blocking,
//! routes replies to the thread that waits for them and requests to the
//! queue, pool or object that serves them. A communication thread drives
//! it, except while a thread that waits for a message drives it itself
//! (see `engine`). The few collective steps after start-up (a barrier, a
//! queue's name sent to every rank) are point-to-point messages through
//! the engine, so a rank waiting in one still answers the others'
//! requests.

mod engine;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use mpi::Threading;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

use crate::sync::atomic::{AtomicBool, AtomicU32, Ordering};
pub(crate) use engine::request;
use engine::{Cmd, Comm, Engine, Routes};

/// Why the MPI world could not be set up, or a remote call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MpiError {
    /// MPI was initialised already (one `World` per process).
    #[error("MPI is initialised already: make one World per process")]
    AlreadyInitialized,
    /// The MPI library does not offer the thread level the communication
    /// thread needs.
    #[error("the MPI library offers threading {provided:?}; shm needs Serialized (MPI_THREAD_SERIALIZED)")]
    ThreadLevel {
        /// What it offers.
        provided: String,
    },
    /// The ranks do not all run the same executable (a task is sent as a
    /// code offset, which means something only in the same file).
    #[error("the ranks run different executables (content hashes {hashes:?})")]
    MismatchedExecutables {
        /// Each rank's hash of its executable.
        hashes: Vec<u64>,
    },
    /// A rank out of the world's range.
    #[error("rank {rank} is not in a world of {size}")]
    NoSuchRank {
        /// The rank asked for.
        rank: usize,
        /// The world's size.
        size: usize,
    },
    /// Creating or attaching the owner's queue failed.
    #[error("the queue's segment: {0}")]
    Segment(#[from] shmproc_core::SegmentError),
    /// An item that does not (de)serialise, or a malformed message.
    #[error("{0}")]
    Message(String),
    /// The owner refused a request (an unknown queue, a closed one).
    #[error("rank {owner} refused the request: {why}")]
    Refused {
        /// The owner rank.
        owner: usize,
        /// Its reason.
        why: String,
    },
    /// A task of a [`DistPool`](crate::DistPool) failed (it panicked, or
    /// its worker died: the node's pool replaced the worker), with the
    /// local pool's account of it; the other tasks went on.
    #[error("task {index} failed on {why}")]
    Task {
        /// Its index in the call's input (0 for `apply`).
        index: usize,
        /// The worker that ran it, its host, and why it failed.
        why: String,
    },
    /// A shared container or a manager's object failed on this rank (in
    /// shared memory); on another node the owner's account of it comes as
    /// [`MpiError::Refused`].
    #[error(transparent)]
    Manager(#[from] shmproc_manager::ManagerError),
    /// A wait ran out of time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The operation needs something this object lacks (a `join` on a
    /// queue that is not joinable, a call on a rank that cannot make it).
    #[error("{0}")]
    Unsupported(&'static str),
}

impl From<MpiError> for shmproc_core::Error {
    fn from(e: MpiError) -> Self {
        let e = match e {
            // Its own kind (KeyNotFound, Corrupted, ...).
            MpiError::Manager(m) => return m.into(),
            e => e,
        };
        let kind = match &e {
            MpiError::AlreadyInitialized
            | MpiError::NoSuchRank { .. }
            | MpiError::ThreadLevel { .. }
            | MpiError::MismatchedExecutables { .. }
            | MpiError::Unsupported(_) => shmproc_core::ErrorKind::Usage,
            MpiError::Segment(_) => shmproc_core::ErrorKind::Segment,
            MpiError::Message(_) => shmproc_core::ErrorKind::Serialization,
            MpiError::Refused { .. } | MpiError::Task { .. } | MpiError::Manager(_) => shmproc_core::ErrorKind::Other,
            MpiError::Timeout(_) => shmproc_core::ErrorKind::Timeout,
        };
        Self::new(kind, e)
    }
}

/// Message tags on the world's own communicator (a duplicate of
/// `MPI_COMM_WORLD`, so the user's traffic never mixes with ours).
pub(crate) mod tag {
    pub(crate) const PUT: i32 = 1;
    pub(crate) const GET: i32 = 2;
    /// A rank reached a barrier (to rank 0).
    pub(crate) const ARRIVE: i32 = 3;
    /// Rank 0 lets a barrier go.
    pub(crate) const RELEASE: i32 = 4;
    /// A queue's name, from its owner.
    pub(crate) const NAME: i32 = 5;
    /// A chunk of a pool's tasks, for a node's leader.
    pub(crate) const CHUNK: i32 = 6;
    /// A joinable queue's `task_done`.
    pub(crate) const TASK_DONE: i32 = 7;
    /// A joinable queue's `join`.
    pub(crate) const JOIN: i32 = 8;
    /// An operation on a shared container or a manager's object.
    pub(crate) const OBJECT: i32 = 9;
    /// The last request tag.
    pub(crate) const LAST_REQUEST: i32 = OBJECT;
    /// The reply tag of a request that wants no reply.
    pub(crate) const NO_REPLY: i32 = 98;
    /// The header of a large message (its body follows on another
    /// communicator).
    pub(crate) const LARGE: i32 = 99;
    /// Replies go to the tag the requester chose, from here up.
    pub(crate) const FIRST_REPLY: i32 = 100;
    pub(crate) const REPLIES: u32 = 30_000;
}

/// A request from a remote rank, handed to the queue that serves it.
pub(crate) struct Request {
    pub(crate) from: usize,
    pub(crate) reply_tag: i32,
    pub(crate) kind: i32,
    pub(crate) body: Vec<u8>,
}

pub(crate) struct Shared {
    pub(crate) rank: usize,
    pub(crate) size: usize,
    /// Node index of every rank.
    pub(crate) node_of: Vec<usize>,
    /// The owner-side handlers of this rank's queues, pools and objects,
    /// by id.
    handlers: Mutex<HashMap<u32, Handler>>,
    /// Commands for the engine (`None` once it stopped).
    cmds: Mutex<Option<mpsc::Sender<Cmd>>>,
    next_reply: AtomicU32,
    /// Every MPI call goes through it (see `engine`).
    engine: Mutex<Engine>,
    /// Threads driving the engine while they wait (0 or 1).
    drivers: AtomicU32,
    /// The communication thread, and whether it sleeps.
    comm_thread: OnceLock<Thread>,
    comm_sleeping: AtomicBool,
}

/// What serves the requests for one queue, pool or object. It runs on the
/// thread that steps the engine, so it never blocks: it answers at once what it
/// can (a put into a queue with room) and hands the rest to its threads.
pub(crate) type Handler = Box<dyn Fn(Request) + Send>;

impl Shared {
    /// Serves the requests for `id` with `handler` from now on.
    pub(crate) fn serve(&self, id: u32, handler: Handler) {
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, handler);
    }

    /// A handler that hands every request to a thread through `to`
    /// (refusing them once that thread has ended).
    pub(crate) fn forward(self: &Arc<Self>, to: mpsc::Sender<Request>) -> Handler {
        let s = Arc::clone(self);
        Box::new(move |r: Request| {
            let (from, reply_tag) = (r.from, r.reply_tag);
            if to.send(r).is_err() {
                s.reply(from, reply_tag, Err("its serving thread has ended"));
            }
        })
    }

    /// Sends `bytes` to `to` with `tag`.
    pub(crate) fn send(&self, to: usize, tag: i32, bytes: Vec<u8>) {
        self.cmd(Cmd::Send { to, tag, bytes });
    }

    /// Sends a request to `to` and waits for its reply.
    pub(crate) fn ask(&self, to: usize, tag: i32, body: &[u8], queue: u32) -> Result<Vec<u8>, MpiError> {
        let answer = self.ask_async(to, tag, body, queue);
        self.wait_reply(&answer)
    }

    /// Sends a request to `to`; its reply comes on the channel returned.
    /// The request leaves at once when the engine is free (this thread
    /// sends it), else with the engine's next step.
    pub(crate) fn ask_async(&self, to: usize, tag: i32, body: &[u8], queue: u32) -> mpsc::Receiver<Vec<u8>> {
        let n = self.next_reply.fetch_add(1, Ordering::Relaxed) % tag::REPLIES;
        let reply_tag = tag::FIRST_REPLY + i32::try_from(n).unwrap_or(0);
        let (reply, answer) = mpsc::channel();
        self.cmd_now(Cmd::Ask {
            to,
            tag,
            reply_tag,
            bytes: request(queue, reply_tag, body),
            reply,
        });
        answer
    }

    /// Sends a request to `to` that wants no reply.
    pub(crate) fn tell(&self, to: usize, tag: i32, body: &[u8], queue: u32) -> Result<(), MpiError> {
        let sent = self.cmd_now(Cmd::Send {
            to,
            tag,
            bytes: request(queue, tag::NO_REPLY, body),
        });
        if sent {
            Ok(())
        } else {
            Err(MpiError::Message("the World was dropped: nothing can be sent".into()))
        }
    }

    /// A number no other call of this rank got (a handle's name).
    pub(crate) fn fresh_id(&self) -> u32 {
        self.next_reply.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for a reply of [`Self::ask_async`]: drives the engine while
    /// it is due (no wake-up when it comes), sleeps on it if another thread
    /// drives or it takes long.
    pub(crate) fn wait_reply(&self, answer: &mpsc::Receiver<Vec<u8>>) -> Result<Vec<u8>, MpiError> {
        if let Some(got) = self.drive_until(|| answer.try_recv().ok()) {
            return Ok(got);
        }
        answer
            .recv()
            .map_err(|_| MpiError::Message("the communication thread has stopped".into()))
    }

    /// Replies `status` and `body` to `to` on `reply_tag`.
    pub(crate) fn reply(&self, to: usize, reply_tag: i32, status: Result<&[u8], &str>) {
        if reply_tag == tag::NO_REPLY {
            if let Err(why) = status {
                tracing::warn!(to, why, "a request that wants no reply failed");
            }
            return;
        }
        let mut msg = Vec::new();
        match status {
            Ok(b) => {
                msg.push(0);
                msg.extend_from_slice(b);
            }
            Err(why) => {
                msg.push(1);
                msg.extend_from_slice(why.as_bytes());
            }
        }
        self.send(to, reply_tag, msg);
    }
}

/// A reply as [`Shared::reply`] wrote it: its body after a 0 status, the
/// owner's refusal after any other.
pub(crate) fn status(owner: usize, mut reply: Vec<u8>) -> Result<Vec<u8>, MpiError> {
    match reply.first() {
        Some(0) => {
            reply.remove(0);
            Ok(reply)
        }
        Some(_) => Err(MpiError::Refused {
            owner,
            why: String::from_utf8_lossy(&reply[1..]).into_owned(),
        }),
        None => Err(MpiError::Message("an empty reply".into())),
    }
}

pub(crate) fn rank_i32(r: usize) -> i32 {
    i32::try_from(r).unwrap_or(i32::MAX)
}

/// What collective steps receive, in the order they arrive.
pub(crate) struct Inboxes {
    arrive: mpsc::Receiver<(usize, Vec<u8>)>,
    release: mpsc::Receiver<(usize, Vec<u8>)>,
    pub(crate) name: mpsc::Receiver<(usize, Vec<u8>)>,
}

/// The job's ranks. Make one per process, after `shmproc::init()`; dropping it
/// (on every rank) waits for the others, stops the communication thread and
/// finalises MPI.
pub struct World {
    pub(crate) shared: Arc<Shared>,
    pub(crate) inboxes: Inboxes,
    thread: Option<JoinHandle<()>>,
    pub(crate) next_queue: u32,
    launched: bool,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("rank", &self.shared.rank)
            .field("size", &self.shared.size)
            .field("node", &self.node())
            .field("nodes", &self.nodes())
            .finish_non_exhaustive()
    }
}

impl World {
    /// Initialises MPI (`MPI_THREAD_SERIALIZED`: one thread makes the
    /// calls, see the module docs) and learns which ranks share a node
    /// (MPI's shared-memory split). Without a launcher this is a world of
    /// one.
    ///
    /// `SHM_MPI_NODES=per-rank` makes every rank a node of its own (a
    /// testing aid: it sends same-host traffic through MPI).
    pub fn init() -> Result<Self, MpiError> {
        let (universe, provided) =
            mpi::initialize_with_threading(Threading::Serialized).ok_or(MpiError::AlreadyInitialized)?;
        if !matches!(provided, Threading::Serialized | Threading::Multiple) {
            return Err(MpiError::ThreadLevel {
                provided: format!("{provided:?}"),
            });
        }
        let world = universe.world();
        let comm = world.duplicate();
        let rank = usize::try_from(world.rank()).unwrap_or(0);
        let size = usize::try_from(world.size()).unwrap_or(1);
        let node_of = if std::env::var("SHM_MPI_NODES").is_ok_and(|v| v == "per-rank") {
            (0..size).collect()
        } else {
            nodes(&world, size)
        };
        let mut hashes = vec![0u64; size];
        world.all_gather_into(&[exe_hash()][..], &mut hashes[..]);
        if hashes.iter().any(|&h| h != hashes[0] || h == 0) {
            return Err(MpiError::MismatchedExecutables { hashes });
        }
        let (cmds, commands) = mpsc::channel();
        let (to_arrive, arrive) = mpsc::channel();
        let (to_release, release) = mpsc::channel();
        let (to_name, name) = mpsc::channel();
        let routes = Routes {
            arrive: to_arrive,
            release: to_release,
            name: to_name,
        };
        let shared = Arc::new(Shared {
            rank,
            size,
            node_of,
            handlers: Mutex::new(HashMap::new()),
            cmds: Mutex::new(Some(cmds)),
            next_reply: AtomicU32::new(0),
            engine: Mutex::new(Engine::new(Comm(comm), commands, routes)),
            drivers: AtomicU32::new(0),
            comm_thread: OnceLock::new(),
            comm_sleeping: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("shmproc-mpi".into())
            .spawn(move || engine::communicate(&s))
            .map_err(|e| MpiError::Message(format!("cannot start the communication thread: {e}")))?;
        let _ = shared.comm_thread.set(thread.thread().clone());
        Ok(Self {
            shared,
            inboxes: Inboxes { arrive, release, name },
            thread: Some(thread),
            next_queue: 0,
            launched: crate::launched_ranks().is_some(),
            _universe: universe,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.shared.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.shared.size
    }

    /// Index of this rank's node (0..[`World::nodes`]).
    pub fn node(&self) -> usize {
        self.shared.node_of[self.shared.rank]
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.shared.node_of.iter().max().map_or(1, |m| m + 1)
    }

    /// The ranks on this rank's node, itself included.
    pub fn node_ranks(&self) -> Vec<usize> {
        let me = self.node();
        (0..self.size()).filter(|&r| self.shared.node_of[r] == me).collect()
    }

    /// Whether `rank` shares this rank's node (so shared memory reaches it).
    pub fn same_node(&self, rank: usize) -> bool {
        self.shared.node_of.get(rank) == Some(&self.node())
    }

    /// Whether a launcher started this process as one of several ranks.
    pub fn launched(&self) -> bool {
        self.launched
    }

    /// Sends a raw request (`kind` as its tag) for queue `queue` to `to`
    /// and returns the reply's status: for tests of what a rank does with
    /// requests no queue of this library sends. Not API.
    #[doc(hidden)]
    pub fn __raw_request(&self, to: usize, kind: i32, queue: u32) -> Result<(), MpiError> {
        status(to, self.shared.ask(to, kind, &[], queue)?).map(drop)
    }

    /// Runs `f` with `MPI_COMM_WORLD` under the rank's engine lock (no
    /// other MPI call of this process runs meanwhile; see the module docs)
    /// and returns what it returns: the way to mix a program's own MPI calls
    /// with shm's. Requests of other ranks wait while `f` runs.
    ///
    /// # Panics
    ///
    /// If `f` panics (the panic comes back here).
    pub fn with_mpi<R: Send + 'static>(&self, f: impl FnOnce(&SimpleCommunicator) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.shared.cmd(Cmd::Run(Box::new(move |c| {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c))));
        })));
        match rx.recv().expect("the engine runs until the World is dropped") {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Sends `bytes` from `owner` to every other rank; returns them on
    /// every rank (the owner's own included). Every rank calls this, in
    /// the same order, each call followed by a barrier before the next.
    pub(crate) fn broadcast_from(&self, owner: usize, bytes: Vec<u8>) -> Result<Vec<u8>, MpiError> {
        if self.rank() == owner {
            for r in (0..self.size()).filter(|&r| r != owner) {
                self.shared.send(r, tag::NAME, bytes.clone());
            }
            return Ok(bytes);
        }
        let (from, got) = self
            .inboxes
            .name
            .recv()
            .map_err(|_| MpiError::Message("the communication thread has stopped".into()))?;
        if from != owner {
            return Err(MpiError::Message(format!(
                "a collective step's message from rank {from}, expected one from {owner}"
            )));
        }
        Ok(got)
    }

    /// A fresh id for a queue, pool or object (the same on every rank:
    /// they are made collectively, in the same order).
    pub(crate) fn next_id(&mut self) -> u32 {
        let id = self.next_queue;
        self.next_queue += 1;
        id
    }

    /// Waits until every rank got here (this rank keeps serving the
    /// others' requests meanwhile).
    pub fn barrier(&self) {
        let s = &self.shared;
        if s.size == 1 {
            return;
        }
        if s.rank == 0 {
            for _ in 1..s.size {
                let _ = self.inboxes.arrive.recv();
            }
            for r in 1..s.size {
                s.send(r, tag::RELEASE, Vec::new());
            }
        } else {
            s.send(0, tag::ARRIVE, Vec::new());
            let _ = self.inboxes.release.recv();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Every rank is done with every queue before anything stops.
        self.barrier();
        self.shared.cmd(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A hash of this process's executable file (the same file on every
/// node: a task travels as a code offset); 0 if it cannot be read.
fn exe_hash() -> u64 {
    let Ok(bytes) = std::fs::read("/proc/self/exe") else {
        return 0;
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }
    h.max(1)
}

/// Node index of every rank: ranks whose shared-memory split has the same
/// lowest world rank share a node; nodes are numbered by that rank.
fn nodes(world: &SimpleCommunicator, size: usize) -> Vec<usize> {
    let node = world.split_shared(world.rank());
    // The lowest world rank on the node is its leader: node rank 0.
    let mut leader = [world.rank()];
    node.process_at_rank(0).broadcast_into(&mut leader[..]);
    let mut leaders = vec![0i32; size];
    world.all_gather_into(&leader[..], &mut leaders[..]);
    let mut distinct = leaders.clone();
    distinct.sort_unstable();
    distinct.dedup();
    leaders.iter().map(|l| distinct.binary_search(l).unwrap_or(0)).collect()
}
