//! [`DistPool`]: a `Pool` on every node, fed by one rank through MPI.

use std::sync::{Arc, PoisonError, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shm_pool::{Pool, Task};

use crate::world::{MpiError, Request, Shared, World, tag};

/// What a node's leader runs for one chunk: decode the items, map them on
/// its local pool, encode the results. Travels as a code offset.
type Entry = fn(&Pool, &[u8]) -> Result<Vec<u8>, String>;

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
    let f = conjure::<F>();
    let out = pool.map(f, items).map_err(|e| e.to_string())?;
    postcard::to_allocvec(&out).map_err(|e| e.to_string())
}

/// What one lane brings back: (chunk index, results) in its order.
type Lane<R> = Result<Vec<(usize, Vec<R>)>, MpiError>;

/// A copy of the zero-sized value `C`.
fn conjure<C: Copy>() -> C {
    const {
        assert!(
            size_of::<C>() == 0,
            "a pool task must be a function or a closure that captures nothing"
        );
    };
    // SAFETY: `C` has no bytes (checked above), so any aligned pointer
    // reads a value; it is `Copy`, and the rank that sent the chunk held a
    // value of it (the task it was given), so this is a copy of that.
    unsafe { std::ptr::NonNull::<C>::dangling().as_ptr().read() }
}

/// A pool spanning the job: on each node its leader (the node's lowest
/// rank) runs a local [`Pool`] of worker processes fed through shared
/// memory; the rank that calls [`DistPool::map`] splits the input into
/// chunks, runs its own node's share on its local pool and sends the other
/// nodes' shares to their leaders as MPI messages. Results come back in
/// input order.
///
/// Made collectively by [`World::pool`]; every rank keeps it until every
/// rank is done (its leaders serve meanwhile), then drops it. A task is a
/// function (or a closure that captures nothing) of this executable: a
/// capturing closure does not compile.
pub struct DistPool {
    shared: Arc<Shared>,
    id: u32,
    /// This node's pool, on its leader.
    local: Option<Arc<Pool>>,
    /// The leader rank of every node.
    leaders: Vec<usize>,
    node: usize,
    processes: usize,
}

impl std::fmt::Debug for DistPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistPool")
            .field("leaders", &self.leaders)
            .field("local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

impl World {
    /// A pool of `processes` workers on every node (Python's `Pool(n)`,
    /// per node). Every rank calls this, in the same order.
    pub fn pool(&mut self, processes: usize) -> Result<DistPool, MpiError> {
        let id = self.next_queue;
        self.next_queue += 1;
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
            processes,
        })
    }
}

impl DistPool {
    /// Python's `map` across the job: `f` over `items`, in input order.
    /// Call it on a rank that leads its node (rank 0 always does).
    ///
    /// # Errors
    ///
    /// The first chunk that failed (a task's error or a node's refusal,
    /// with its reason), or [`MpiError::Message`] on a rank that leads no
    /// node.
    pub fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        let _ = f;
        let Some(local) = &self.local else {
            return Err(MpiError::Message(
                "DistPool::map runs on a rank that leads its node (rank 0 does)".into(),
            ));
        };
        let items: Vec<A> = items.into_iter().collect();
        let nodes = self.leaders.len();
        // Python's default chunk size over every worker of the job.
        let workers = (nodes * self.processes).max(1);
        let chunk = items.len().div_ceil(workers * 4).max(1);
        let off = shm_core::process::code_offset_of(entry::<F, A, R, M> as Entry as usize)
            .map_err(|e| MpiError::Message(e.to_string()))?;
        let mut chunks: Vec<Vec<A>> = Vec::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(chunk).collect());
        }
        // Chunk k goes to lane k % lanes, and lane l to node l % nodes:
        // `processes` lanes per node, each a thread that sends its chunks
        // one after the other, so every worker of every node has a chunk.
        let n_chunks = chunks.len();
        let lanes = workers;
        let mut per_lane: Vec<Vec<(usize, Vec<A>)>> = (0..lanes).map(|_| Vec::new()).collect();
        for (k, c) in chunks.into_iter().enumerate() {
            per_lane[k % lanes].push((k, c));
        }
        let results: Vec<Lane<R>> = std::thread::scope(|s| {
            let handles: Vec<_> = per_lane
                .into_iter()
                .enumerate()
                .map(|(lane, work)| (lane % nodes, work))
                .map(|(node, work)| {
                    let leader = self.leaders[node];
                    let here = node == self.node;
                    s.spawn(move || -> Lane<R> {
                        let mut out = Vec::with_capacity(work.len());
                        for (k, c) in work {
                            let rs: Vec<R> = if here {
                                local
                                    .map(conjure::<F>(), c)
                                    .map_err(|e| MpiError::Message(e.to_string()))?
                            } else {
                                let mut body = off.to_le_bytes().to_vec();
                                body.extend(postcard::to_allocvec(&c).map_err(|e| MpiError::Message(e.to_string()))?);
                                let reply = self.shared.ask(leader, tag::CHUNK, &body, self.id)?;
                                match reply.split_first() {
                                    Some((0, rest)) => {
                                        postcard::from_bytes(rest).map_err(|e| MpiError::Message(e.to_string()))?
                                    }
                                    Some((_, why)) => {
                                        return Err(MpiError::Refused {
                                            owner: leader,
                                            why: String::from_utf8_lossy(why).into_owned(),
                                        });
                                    }
                                    None => return Err(MpiError::Message("an empty reply".into())),
                                }
                            };
                            out.push((k, rs));
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(MpiError::Message("a sending thread panicked".into())))
                })
                .collect()
        });
        let mut ordered: Vec<Option<Vec<R>>> = (0..n_chunks).map(|_| None).collect();
        for r in results {
            for (k, rs) in r? {
                ordered[k] = Some(rs);
            }
        }
        Ok(ordered.into_iter().flatten().flatten().collect())
    }
}

/// The leader's thread for pool `id`: runs each chunk sent to it on the
/// local pool and replies with the results (or why not).
fn serve(shared: &Arc<Shared>, id: u32, pool: Arc<Pool>) {
    let (to_serve, requests) = mpsc::channel::<Request>();
    shared
        .handlers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, to_serve);
    let s = Arc::clone(shared);
    let started = std::thread::Builder::new().name("shm-mpi-pool".into()).spawn(move || {
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
            if let Err(e) = std::thread::Builder::new().name("shm-mpi-chunk".into()).spawn(run) {
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
    let off = u64::from_le_bytes(
        body.get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("a chunk without its entry")?,
    );
    let addr = shm_core::process::code_address_of(off).map_err(|e| e.to_string())?;
    // SAFETY: `addr` lies inside this executable's code (checked above),
    // and every rank runs this very executable (checked by `World::init`
    // over MPI, which only the job's ranks can reach): the sender took the
    // offset of an `entry::<F, A, R, M>`, an `Entry`, at the same place.
    let f = unsafe { std::mem::transmute::<usize, Entry>(addr) };
    f(pool, &body[8..])
}
