//! [`World`]: the ranks of the job, which of them share a node, and the
//! one thread of each rank that makes every MPI call after start-up.
//!
//! # One communication thread
//!
//! Every MPI call after [`World::init`] is made by one thread per rank (so
//! `MPI_THREAD_SERIALIZED` is enough, and no MPI library's thread-multiple
//! paths are relied on): it sends what the process's other threads hand
//! it, probes for what arrives without blocking, routes replies to the
//! thread that waits for them and requests to the queue that serves them.
//! The few collective steps after start-up (a barrier, a queue's name
//! sent to every rank) are point-to-point messages through that thread, so
//! a rank waiting in one still answers the others' requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use mpi::Threading;
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::{Request as MpiRequest, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

use crate::sync::atomic::{AtomicU32, Ordering};

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
    Segment(#[from] shm_core::SegmentError),
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
    Manager(#[from] shm_manager::ManagerError),
    /// A wait ran out of time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The operation needs something this object lacks (a `join` on a
    /// queue that is not joinable, a call on a rank that cannot make it).
    #[error("{0}")]
    Unsupported(&'static str),
}

impl From<MpiError> for shm_core::Error {
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
            | MpiError::Unsupported(_) => shm_core::ErrorKind::Usage,
            MpiError::Segment(_) => shm_core::ErrorKind::Segment,
            MpiError::Message(_) => shm_core::ErrorKind::Serialization,
            MpiError::Refused { .. } | MpiError::Task { .. } | MpiError::Manager(_) => shm_core::ErrorKind::Other,
            MpiError::Timeout(_) => shm_core::ErrorKind::Timeout,
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
    /// Replies go to the tag the requester chose, from here up.
    pub(crate) const FIRST_REPLY: i32 = 100;
    pub(crate) const REPLIES: u32 = 30_000;
}

/// What the other threads ask of the communication thread.
enum Cmd {
    /// Send `bytes` to `to` with `tag`.
    Send {
        to: usize,
        tag: i32,
        bytes: Vec<u8>,
    },
    /// Send a request and hand its reply (on `reply_tag`) to `reply`.
    Ask {
        to: usize,
        tag: i32,
        reply_tag: i32,
        bytes: Vec<u8>,
        reply: mpsc::Sender<Vec<u8>>,
    },
    /// Run a closure on `MPI_COMM_WORLD`, on this thread.
    Run(Box<dyn FnOnce(&SimpleCommunicator) + Send>),
    Stop,
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
    cmds: Mutex<mpsc::Sender<Cmd>>,
    next_reply: AtomicU32,
}

/// What serves the requests for one queue, pool or object. It runs on the
/// communication thread, so it never blocks: it answers at once what it
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

    fn cmd(&self, c: Cmd) {
        // A send fails only once the thread has stopped (the World is
        // being dropped): nothing is waiting for it then.
        let _ = self.cmds.lock().unwrap_or_else(PoisonError::into_inner).send(c);
    }

    /// Sends `bytes` to `to` with `tag`.
    pub(crate) fn send(&self, to: usize, tag: i32, bytes: Vec<u8>) {
        self.cmd(Cmd::Send { to, tag, bytes });
    }

    /// Sends a request to `to` and waits for its reply.
    pub(crate) fn ask(&self, to: usize, tag: i32, body: &[u8], queue: u32) -> Result<Vec<u8>, MpiError> {
        let n = self.next_reply.fetch_add(1, Ordering::Relaxed) % tag::REPLIES;
        let reply_tag = tag::FIRST_REPLY + i32::try_from(n).unwrap_or(0);
        let (reply, answer) = mpsc::channel();
        self.cmd(Cmd::Ask {
            to,
            tag,
            reply_tag,
            bytes: request(queue, reply_tag, body),
            reply,
        });
        answer
            .recv()
            .map_err(|_| MpiError::Message("the communication thread has stopped".into()))
    }

    /// Replies `status` and `body` to `to` on `reply_tag`.
    pub(crate) fn reply(&self, to: usize, reply_tag: i32, status: Result<&[u8], &str>) {
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

pub(crate) fn rank_i32(r: usize) -> i32 {
    i32::try_from(r).unwrap_or(i32::MAX)
}

/// What collective steps receive, in the order they arrive.
pub(crate) struct Inboxes {
    arrive: mpsc::Receiver<(usize, Vec<u8>)>,
    release: mpsc::Receiver<(usize, Vec<u8>)>,
    pub(crate) name: mpsc::Receiver<(usize, Vec<u8>)>,
}

/// The job's ranks. Make one per process, after `shm::init()`; dropping it
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
        let shared = Arc::new(Shared {
            rank,
            size,
            node_of,
            handlers: Mutex::new(HashMap::new()),
            cmds: Mutex::new(cmds),
            next_reply: AtomicU32::new(0),
        });
        let (to_arrive, arrive) = mpsc::channel();
        let (to_release, release) = mpsc::channel();
        let (to_name, name) = mpsc::channel();
        let s = Arc::clone(&shared);
        let comm = Comm(comm);
        let routes = Routes {
            arrive: to_arrive,
            release: to_release,
            name: to_name,
        };
        let thread = std::thread::Builder::new()
            .name("shm-mpi".into())
            .spawn(move || communicate(&s, &comm, &commands, &routes))
            .map_err(|e| MpiError::Message(format!("cannot start the communication thread: {e}")))?;
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
        let reply = self.shared.ask(to, kind, &[], queue)?;
        match reply.split_first() {
            Some((0, _)) => Ok(()),
            Some((_, why)) => Err(MpiError::Refused {
                owner: to,
                why: String::from_utf8_lossy(why).into_owned(),
            }),
            None => Err(MpiError::Message("an empty reply".into())),
        }
    }

    /// Runs `f` with `MPI_COMM_WORLD` on the rank's communication thread,
    /// the one thread that may call MPI (see the module docs), and returns
    /// what it returns: the way to mix a program's own MPI calls with
    /// shm's. Requests of other ranks wait while `f` runs.
    ///
    /// # Panics
    ///
    /// If `f` panics (the communication thread ends with it).
    pub fn with_mpi<R: Send + 'static>(&self, f: impl FnOnce(&SimpleCommunicator) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.shared.cmd(Cmd::Run(Box::new(move |c| {
            let _ = tx.send(f(c));
        })));
        rx.recv()
            .expect("the communication thread runs until the World is dropped")
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

/// The communicator, moved into the communication thread.
struct Comm(SimpleCommunicator);

// SAFETY: the handle is an identifier; after `World::init` hands it to the
// communication thread, only that thread makes MPI calls
// (MPI_THREAD_SERIALIZED, checked at init), and `World::drop` joins it
// before MPI is finalised.
unsafe impl Send for Comm {}

/// Where the communication thread puts the messages of collective steps.
struct Routes {
    arrive: mpsc::Sender<(usize, Vec<u8>)>,
    release: mpsc::Sender<(usize, Vec<u8>)>,
    name: mpsc::Sender<(usize, Vec<u8>)>,
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

/// The communication thread: sends what it is handed, probes for what
/// arrives (without blocking: a blocking probe busy-polls a core), and
/// routes it.
fn communicate(s: &Shared, comm: &Comm, commands: &mpsc::Receiver<Cmd>, routes: &Routes) {
    let comm = &comm.0;
    let mut waiting: HashMap<i32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut sends = Sends::default();
    let mut idle = 0u32;
    loop {
        sends.progress();
        // Commands first; when there is nothing to do, a short wait on
        // them doubles as the pause between probes.
        // Spin a while (a request's reply usually comes within it; a
        // sleeping thread answers a slice later), then sleep in short
        // slices on the command channel.
        let next = if idle < SPIN_PROBES || !sends.is_empty() {
            commands.try_recv().ok()
        } else {
            commands.recv_timeout(Duration::from_micros(50)).ok()
        };
        if let Some(cmd) = next {
            idle = 0;
            match cmd {
                Cmd::Send { to, tag, bytes } => sends.start(comm, to, tag, bytes),
                Cmd::Ask {
                    to,
                    tag,
                    reply_tag,
                    bytes,
                    reply,
                } => {
                    waiting.insert(reply_tag, reply);
                    sends.start(comm, to, tag, bytes);
                }
                Cmd::Run(f) => f(&SimpleCommunicator::world()),
                Cmd::Stop => {
                    sends.finish();
                    return;
                }
            }
            continue;
        }
        let Some(probed) = comm.any_process().immediate_matched_probe() else {
            idle = idle.saturating_add(1);
            std::hint::spin_loop();
            continue;
        };
        idle = 0;
        let (body, status) = probed.matched_receive_vec::<u8>();
        let from = usize::try_from(status.source_rank()).unwrap_or(usize::MAX);
        route(s, &mut waiting, routes, from, status.tag(), body);
    }
}

/// Probes before the communication thread sleeps between them.
const SPIN_PROBES: u32 = 20_000;

/// Sends under way. A blocking send of a large message waits until the
/// receiver takes it (rendezvous), and two ranks each sending one to the
/// other would wait for ever: every send is immediate, and its buffer lives
/// until MPI says the send completed.
#[derive(Default)]
struct Sends {
    pending: Vec<(MpiRequest<'static, [u8]>, *mut [u8])>,
}

impl Sends {
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn start(&mut self, comm: &SimpleCommunicator, to: usize, tag: i32, bytes: Vec<u8>) {
        let buf: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
        let ptr: *mut [u8] = buf;
        // SAFETY: `ptr` comes from the leaked box just above; the shared
        // view handed to MPI is the only use of it until `progress` or
        // `finish` frees it once the send has completed.
        let view: &'static [u8] = unsafe { &*ptr };
        let request = comm
            .process_at_rank(rank_i32(to))
            .immediate_send_with_tag(StaticScope, view, tag);
        self.pending.push((request, ptr));
    }

    /// Frees the buffers of the sends that completed.
    fn progress(&mut self) {
        let mut still = Vec::with_capacity(self.pending.len());
        for (request, ptr) in self.pending.drain(..) {
            match request.test() {
                // SAFETY: the send completed, so MPI no longer reads the
                // buffer; `ptr` is the box leaked by `start`, freed once.
                Ok(_) => drop(unsafe { Box::from_raw(ptr) }),
                Err(request) => still.push((request, ptr)),
            }
        }
        self.pending = still;
    }

    /// Waits for every send under way, then frees its buffer.
    fn finish(&mut self) {
        for (request, ptr) in self.pending.drain(..) {
            request.wait();
            // SAFETY: as in `progress`: complete, freed once.
            drop(unsafe { Box::from_raw(ptr) });
        }
    }
}

/// Hands one arrived message to whoever waits for it; refuses what cannot
/// be routed.
fn route(
    s: &Shared,
    waiting: &mut HashMap<i32, mpsc::Sender<Vec<u8>>>,
    routes: &Routes,
    from: usize,
    kind: i32,
    body: Vec<u8>,
) {
    let inbox = match kind {
        tag::ARRIVE => Some(&routes.arrive),
        tag::RELEASE => Some(&routes.release),
        tag::NAME => Some(&routes.name),
        _ => None,
    };
    if let Some(inbox) = inbox {
        let _ = inbox.send((from, body));
        return;
    }
    if kind >= tag::FIRST_REPLY {
        if let Some(w) = waiting.remove(&kind) {
            let _ = w.send(body);
        } else {
            tracing::warn!(from, kind, "a reply nobody waits for; dropped");
        }
        return;
    }
    let Some((queue, reply_tag, rest)) = parse(&body) else {
        tracing::warn!(from, kind, "a malformed message; dropped");
        return;
    };
    // (The collective steps' tags inside this range were routed above.)
    if !(tag::PUT..=tag::LAST_REQUEST).contains(&kind) {
        s.reply(from, reply_tag, Err("an unknown request tag"));
        return;
    }
    let request = Request {
        from,
        reply_tag,
        kind,
        body: rest.to_vec(),
    };
    let handlers = s.handlers.lock().unwrap_or_else(PoisonError::into_inner);
    match handlers.get(&queue) {
        Some(h) => h(request),
        None => s.reply(from, reply_tag, Err("no such queue on this rank")),
    }
}

/// `[queue id u32][reply tag u32][body]`.
fn parse(body: &[u8]) -> Option<(u32, i32, &[u8])> {
    let queue = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    let reply = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?);
    let reply = i32::try_from(reply).ok().filter(|&t| t >= tag::FIRST_REPLY)?;
    Some((queue, reply, &body[8..]))
}

/// A request's bytes, as `parse` reads them.
pub(crate) fn request(queue: u32, reply_tag: i32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&queue.to_le_bytes());
    v.extend_from_slice(&u32::try_from(reply_tag).unwrap_or(0).to_le_bytes());
    v.extend_from_slice(body);
    v
}
