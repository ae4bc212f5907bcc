//! [`DistQueue`]: a `Queue` owned by one rank and used by all.

use crate::sync::atomic::{AtomicU64, Ordering};
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shm_collections::queue::Queue;

use crate::world::{MpiError, Request, Shared, World, tag};

/// How many operations went which way (a test's proof that same-node
/// traffic never goes through MPI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Puts and gets on the shared-memory queue itself.
    pub local: u64,
    /// Puts and gets sent to the owner as MPI messages.
    pub remote: u64,
}

#[derive(Default)]
struct Counters {
    local: AtomicU64,
    remote: AtomicU64,
}

/// A queue owned by one rank (its shared-memory `Queue` lives on the
/// owner's node) and used with `put`/`get` by every rank: ranks on the
/// owner's node use the queue directly, the others send MPI messages that
/// threads of the owner serve (a put is acknowledged once it is in the
/// queue, so `maxsize` holds for remote producers too).
///
/// Made collectively by [`World::queue`], in the same order on every rank.
pub struct DistQueue<T> {
    shared: Arc<Shared>,
    id: u32,
    owner: usize,
    local: Option<Queue<T>>,
    stats: Counters,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for DistQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistQueue")
            .field("owner", &self.owner)
            .field("local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

/// Longest queue name sent to the other ranks.
const NAME_LEN: usize = 64;

fn message(e: impl std::fmt::Display) -> MpiError {
    MpiError::Message(e.to_string())
}

impl World {
    /// A queue owned by rank `owner`, of at most `maxsize` items (0: the
    /// default bound). Every rank calls this, in the same order.
    pub fn queue<T>(&mut self, owner: usize, maxsize: usize) -> Result<DistQueue<T>, MpiError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        if owner >= self.size() {
            return Err(MpiError::NoSuchRank {
                rank: owner,
                size: self.size(),
            });
        }
        let id = self.next_queue;
        self.next_queue += 1;
        let mut name = [0u8; NAME_LEN];
        let mut made = None;
        if self.rank() == owner {
            let n = format!("shm-mpi-{}-{id}", std::process::id());
            match Queue::<T>::create_named(&n, maxsize) {
                Ok(q) => {
                    name[..n.len()].copy_from_slice(n.as_bytes());
                    made = Some(q);
                }
                Err(e) => tracing::warn!(error = %e, "the owner could not make its queue"),
            }
        }
        // The owner sends the name (empty if it failed) to every rank.
        if self.rank() == owner {
            for r in (0..self.size()).filter(|&r| r != owner) {
                self.shared.send(r, tag::NAME, name.to_vec());
            }
        } else {
            let (from, got) = self
                .inboxes
                .name
                .recv()
                .map_err(|_| message("the communication thread has stopped"))?;
            if from != owner || got.len() != NAME_LEN {
                return Err(message(format!(
                    "a queue name from rank {from}, expected one from {owner}"
                )));
            }
            name.copy_from_slice(&got);
        }
        let end = name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        let name = std::str::from_utf8(&name[..end]).map_err(message)?.to_owned();
        if name.is_empty() {
            return Err(MpiError::Refused {
                owner,
                why: "it could not make the queue".into(),
            });
        }
        let local = match made {
            Some(q) => {
                serve(&self.shared, id, q.clone());
                Some(q)
            }
            None if self.same_node(owner) => Some(Queue::open(&name)?),
            None => None,
        };
        self.barrier();
        if self.rank() == owner {
            // Every rank of the node has it mapped: the name can go.
            let _ = shm_core::Segment::unlink(&name);
        }
        Ok(DistQueue {
            shared: Arc::clone(&self.shared),
            id,
            owner,
            local,
            stats: Counters::default(),
            _t: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> DistQueue<T> {
    /// The owner rank.
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// Whether this rank reaches the queue in shared memory.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// How many operations of this rank went which way.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            local: self.stats.local.load(Ordering::Relaxed),
            remote: self.stats.remote.load(Ordering::Relaxed),
        }
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) -> Result<(), MpiError> {
        if let Some(q) = &self.local {
            self.stats.local.fetch_add(1, Ordering::Relaxed);
            return q.put(item).map_err(message);
        }
        self.stats.remote.fetch_add(1, Ordering::Relaxed);
        let body = postcard::to_allocvec(&item).map_err(message)?;
        self.ask(tag::PUT, &body).map(drop)
    }

    /// Takes an item, waiting while the queue is empty.
    pub fn get(&self) -> Result<T, MpiError> {
        if let Some(q) = &self.local {
            self.stats.local.fetch_add(1, Ordering::Relaxed);
            return q.get().map_err(message);
        }
        self.stats.remote.fetch_add(1, Ordering::Relaxed);
        let bytes = self.ask(tag::GET, &[])?;
        postcard::from_bytes(&bytes).map_err(message)
    }

    /// Sends a request to the owner and waits for its reply.
    fn ask(&self, kind: i32, body: &[u8]) -> Result<Vec<u8>, MpiError> {
        let reply = self.shared.ask(self.owner, kind, body, self.id)?;
        match reply.split_first() {
            Some((0, rest)) => Ok(rest.to_vec()),
            Some((_, why)) => Err(MpiError::Refused {
                owner: self.owner,
                why: String::from_utf8_lossy(why).into_owned(),
            }),
            None => Err(message("an empty reply")),
        }
    }
}

/// Starts the owner's threads for queue `id`: one takes remote puts, one
/// remote gets (so a full queue never stops the gets that would empty it).
fn serve<T: Serialize + DeserializeOwned + Send + 'static>(shared: &Arc<Shared>, id: u32, q: Queue<T>) {
    let (to_dispatch, requests) = mpsc::channel::<Request>();
    let (to_put, puts) = mpsc::channel::<Request>();
    let (to_get, gets) = mpsc::channel::<Request>();
    shared
        .handlers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, to_dispatch);
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
            tracing::warn!(error = %e, "cannot start a serving thread");
        }
    };
    let refuse = Arc::clone(shared);
    spawn(
        "shm-mpi-dispatch",
        Box::new(move || {
            for r in requests {
                let to = match r.kind {
                    tag::PUT => &to_put,
                    tag::GET => &to_get,
                    _ => {
                        refuse.reply(r.from, r.reply_tag, Err("not a request a queue takes"));
                        continue;
                    }
                };
                if to.send(r).is_err() {
                    return;
                }
            }
        }),
    );
    let (s, q2) = (Arc::clone(shared), q.clone());
    spawn(
        "shm-mpi-puts",
        Box::new(move || {
            for r in puts {
                let done = postcard::from_bytes::<T>(&r.body)
                    .map_err(|e| e.to_string())
                    .and_then(|item| q2.put(item).map_err(|e| e.to_string()));
                match done {
                    Ok(()) => s.reply(r.from, r.reply_tag, Ok(&[])),
                    Err(why) => s.reply(r.from, r.reply_tag, Err(&why)),
                }
            }
        }),
    );
    let s = Arc::clone(shared);
    spawn(
        "shm-mpi-gets",
        Box::new(move || {
            for r in gets {
                let item = q
                    .get()
                    .map_err(|e| e.to_string())
                    .and_then(|item| postcard::to_allocvec(&item).map_err(|e| e.to_string()));
                match item {
                    Ok(b) => s.reply(r.from, r.reply_tag, Ok(&b)),
                    Err(why) => s.reply(r.from, r.reply_tag, Err(&why)),
                }
            }
        }),
    );
}
