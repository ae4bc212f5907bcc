//! [`World`]: the ranks of the job, which of them share a node, and the
//! thread that receives the requests of remote ranks.

use crate::sync::atomic::{AtomicU32, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use mpi::Threading;
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

/// Why the MPI world could not be set up, or a remote call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MpiError {
    /// MPI was initialised already (one `World` per process).
    #[error("MPI is initialised already: make one World per process")]
    AlreadyInitialized,
    /// The MPI library does not offer the thread level the owner's
    /// serving threads need.
    #[error("the MPI library offers threading {provided:?}; shm needs Multiple (MPI_THREAD_MULTIPLE)")]
    ThreadLevel {
        /// What it offers.
        provided: String,
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
}

impl From<MpiError> for shm_core::Error {
    fn from(e: MpiError) -> Self {
        let kind = match &e {
            MpiError::AlreadyInitialized | MpiError::NoSuchRank { .. } | MpiError::ThreadLevel { .. } => {
                shm_core::ErrorKind::Usage
            }
            MpiError::Segment(_) => shm_core::ErrorKind::Segment,
            MpiError::Message(_) => shm_core::ErrorKind::Serialization,
            MpiError::Refused { .. } => shm_core::ErrorKind::Other,
        };
        Self::new(kind, e)
    }
}

/// Message tags on the world's own communicator (a duplicate of
/// `MPI_COMM_WORLD`, so the user's traffic never mixes with ours).
pub(crate) mod tag {
    pub(crate) const PUT: i32 = 1;
    pub(crate) const GET: i32 = 2;
    pub(crate) const STOP: i32 = 3;
    /// Replies go to the tag the requester chose, from here up.
    pub(crate) const FIRST_REPLY: i32 = 100;
    pub(crate) const REPLIES: u32 = 30_000;
}

/// The communicator, shared by this process's threads.
pub(crate) struct Comm(pub(crate) SimpleCommunicator);

// SAFETY: `World::init` refuses any thread level below
// MPI_THREAD_MULTIPLE, at which the standard allows MPI calls on one
// communicator from several threads at once; the handle itself is an
// identifier that never changes.
unsafe impl Send for Comm {}
// SAFETY: as for Send.
unsafe impl Sync for Comm {}

/// A request from a remote rank, handed to the queue that serves it.
pub(crate) struct Request {
    pub(crate) from: usize,
    pub(crate) reply_tag: i32,
    pub(crate) kind: i32,
    pub(crate) body: Vec<u8>,
}

pub(crate) struct Shared {
    pub(crate) comm: Comm,
    pub(crate) rank: usize,
    pub(crate) size: usize,
    /// Node index of every rank.
    pub(crate) node_of: Vec<usize>,
    /// The owner-side handlers of this rank's queues, by queue id.
    pub(crate) handlers: Mutex<HashMap<u32, mpsc::Sender<Request>>>,
    next_reply: AtomicU32,
}

impl Shared {
    /// A reply tag for one request of this rank.
    pub(crate) fn reply_tag(&self) -> i32 {
        let n = self.next_reply.fetch_add(1, Ordering::Relaxed) % tag::REPLIES;
        tag::FIRST_REPLY + i32::try_from(n).unwrap_or(0)
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
        self.comm
            .0
            .process_at_rank(rank_i32(to))
            .send_with_tag(&msg[..], reply_tag);
    }
}

pub(crate) fn rank_i32(r: usize) -> i32 {
    i32::try_from(r).unwrap_or(i32::MAX)
}

/// The job's ranks. Make one per process, after `shm::init()`; dropping it
/// (on every rank) waits for the others, stops the serving thread and
/// finalises MPI.
pub struct World {
    pub(crate) shared: Arc<Shared>,
    receiver: Option<JoinHandle<()>>,
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
    /// Initialises MPI (`MPI_THREAD_MULTIPLE`) and learns which ranks share
    /// a node (MPI's shared-memory split). Without a launcher this is a
    /// world of one.
    ///
    /// `SHM_MPI_NODES=per-rank` makes every rank a node of its own (a
    /// testing aid: it sends same-host traffic through MPI).
    pub fn init() -> Result<Self, MpiError> {
        let (universe, provided) =
            mpi::initialize_with_threading(Threading::Multiple).ok_or(MpiError::AlreadyInitialized)?;
        if provided != Threading::Multiple {
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
        let shared = Arc::new(Shared {
            comm: Comm(comm),
            rank,
            size,
            node_of,
            handlers: Mutex::new(HashMap::new()),
            next_reply: AtomicU32::new(0),
        });
        let s = Arc::clone(&shared);
        let receiver = std::thread::Builder::new()
            .name("shm-mpi-receiver".into())
            .spawn(move || receive(&s))
            .map_err(|e| MpiError::Message(format!("cannot start the receiving thread: {e}")))?;
        Ok(Self {
            shared,
            receiver: Some(receiver),
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

    /// Waits until every rank got here.
    pub fn barrier(&self) {
        self.shared.comm.0.barrier();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Every rank is done with every queue before any serving stops.
        self.shared.comm.0.barrier();
        let me = rank_i32(self.shared.rank);
        self.shared
            .comm
            .0
            .process_at_rank(me)
            .send_with_tag(&[0u8][..], tag::STOP);
        if let Some(r) = self.receiver.take() {
            let _ = r.join();
        }
        self.shared
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
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

/// The receiving thread: takes every request sent to this rank and hands
/// it to the queue it names; refuses what it cannot route.
fn receive(s: &Shared) {
    let mut idle = 0u32;
    loop {
        // Probe without blocking, with a growing pause: a blocking probe
        // busy-polls a core in Open MPI.
        let Some(probed) = s.comm.0.any_process().immediate_matched_probe() else {
            idle = idle.saturating_add(1);
            if idle < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(u64::from(idle.min(1000) / 10)));
            }
            continue;
        };
        idle = 0;
        let (body, status) = probed.matched_receive_vec::<u8>();
        let from = usize::try_from(status.source_rank()).unwrap_or(usize::MAX);
        let kind = status.tag();
        if kind == tag::STOP && from == s.rank {
            return;
        }
        let Some((queue, reply_tag, rest)) = parse(&body) else {
            tracing::warn!(from, kind, "a malformed message; dropped");
            continue;
        };
        if kind != tag::PUT && kind != tag::GET {
            s.reply(from, reply_tag, Err("an unknown request tag"));
            continue;
        }
        let handler = s
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&queue)
            .cloned();
        let request = Request {
            from,
            reply_tag,
            kind,
            body: rest.to_vec(),
        };
        match handler {
            Some(h) if h.send(request).is_ok() => {}
            _ => s.reply(from, reply_tag, Err("no such queue on this rank")),
        }
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
