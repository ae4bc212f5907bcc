//! [`DistQueue`]: a `Queue` owned by one rank and used by all.

mod joinable;
mod owner;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_collections::queue::{JoinableQueue, Queue};

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::world::{MpiError, Shared, World, tag};
pub use joinable::DistJoinableQueue;
use owner::wire;

/// How many operations of a rank on a queue or shared object went which
/// way (a test's proof that same-node traffic never goes through MPI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Operations on the object in shared memory.
    pub local: u64,
    /// Operations sent to the owner as MPI messages.
    pub remote: u64,
}

/// A rank's [`Traffic`] on one object, as it moves.
#[derive(Default)]
pub(crate) struct Counters {
    local: AtomicU64,
    remote: AtomicU64,
}

impl Counters {
    pub(crate) fn local(&self) {
        // Relaxed: a count read for display.
        self.local.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remote(&self) {
        // Relaxed: as above.
        self.remote.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Traffic {
        // Relaxed: a snapshot.
        Traffic {
            local: self.local.load(Ordering::Relaxed),
            remote: self.remote.load(Ordering::Relaxed),
        }
    }
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
    local: Option<Local<T>>,
    stats: Counters,
    /// This handle's remote puts (see `owner`).
    puts: Mutex<Puts>,
    _t: PhantomData<fn() -> T>,
}

/// Remote puts a handle may have unacknowledged: a put returns once its
/// item is on its way (as Python's `put` returns once its feeder thread has
/// it), so a producer streams at the network's rate instead of one round
/// trip per item; past this many it waits for the owner's answer.
pub const PUT_WINDOW: u64 = 64;

/// Every this many puts of a handle, one asks for an answer.
const ACK_EVERY: u64 = PUT_WINDOW / 2;

/// A handle's remote puts: how many were sent, how many the owner
/// answered for, and the answers due (with the count each covers).
struct Puts {
    handle: u32,
    sent: u64,
    acked: u64,
    due: VecDeque<(u64, mpsc::Receiver<Vec<u8>>)>,
}

impl<T> std::fmt::Debug for DistQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistQueue")
            .field("owner", &self.owner)
            .field("local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

/// The owner's queue, as this rank maps it.
enum Local<T> {
    Plain(Queue<T>),
    Joinable(JoinableQueue<T>),
}

impl<T> Local<T> {
    fn queue(&self) -> &Queue<T> {
        match self {
            Self::Plain(q) => q,
            Self::Joinable(q) => q,
        }
    }
}

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
        self.make_queue(owner, maxsize, false)
    }

    /// A joinable queue (Python's `JoinableQueue`) owned by rank `owner`:
    /// every rank may `put`, `get`, `task_done` and `join`. Every rank
    /// calls this, in the same order.
    pub fn joinable_queue<T>(&mut self, owner: usize, maxsize: usize) -> Result<DistJoinableQueue<T>, MpiError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(DistJoinableQueue {
            queue: self.make_queue(owner, maxsize, true)?,
        })
    }

    fn make_queue<T>(&mut self, owner: usize, maxsize: usize, joinable: bool) -> Result<DistQueue<T>, MpiError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        if owner >= self.size() {
            return Err(MpiError::NoSuchRank {
                rank: owner,
                size: self.size(),
            });
        }
        let id = self.next_id();
        let mut name = String::new();
        let mut made = None;
        if self.rank() == owner {
            let n = format!("shmproc-mpi-{}-{id}", std::process::id());
            let q = if joinable {
                JoinableQueue::<T>::create_named(&n, maxsize).map(Local::Joinable)
            } else {
                Queue::<T>::create_named(&n, maxsize).map(Local::Plain)
            };
            match q {
                Ok(q) => {
                    name = n;
                    made = Some(q);
                }
                Err(e) => tracing::warn!(error = %e, "the owner could not make its queue"),
            }
        }
        // The owner sends the name (empty if it failed) to every rank.
        let got = self.broadcast_from(owner, name.into_bytes())?;
        let name = String::from_utf8(got).map_err(message)?;
        if name.is_empty() {
            return Err(MpiError::Refused {
                owner,
                why: "it could not make the queue".into(),
            });
        }
        let local = match made {
            Some(q) => {
                owner::serve(&self.shared, id, &q);
                Some(q)
            }
            None if self.same_node(owner) && joinable => Some(Local::Joinable(JoinableQueue::open(&name)?)),
            None if self.same_node(owner) => Some(Local::Plain(Queue::open(&name)?)),
            None => None,
        };
        self.barrier();
        if self.rank() == owner {
            // Every rank of the node has it mapped: the name can go.
            let _ = shmproc_core::Segment::unlink(&name);
        }
        Ok(DistQueue {
            shared: Arc::clone(&self.shared),
            id,
            owner,
            local,
            stats: Counters::default(),
            puts: Mutex::new(Puts {
                handle: self.shared.fresh_id(),
                sent: 0,
                acked: 0,
                due: VecDeque::new(),
            }),
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
    pub fn stats(&self) -> Traffic {
        self.stats.get()
    }

    /// Puts `item`, waiting while the queue is full. From another node the
    /// put returns once the item is on its way to the owner, with at most
    /// [`PUT_WINDOW`] of this handle's puts not yet acknowledged (so the
    /// queue holds at most `maxsize` items, and up to that many more are in
    /// flight to it per remote handle); items from one handle arrive in
    /// order.
    ///
    /// # Errors
    ///
    /// Why the item could not be put: from another node, this put's or an
    /// earlier one's of this handle whose acknowledgement came since
    /// (see [`Self::flush`]).
    pub fn put(&self, item: T) -> Result<(), MpiError> {
        if let Some(q) = &self.local {
            self.stats.local();
            return q.queue().put(item).map_err(message);
        }
        self.stats.remote();
        let item = postcard::to_allocvec(&item).map_err(message)?;
        let mut puts = self.puts.lock().unwrap_or_else(PoisonError::into_inner);
        puts.sent += 1;
        let seq = puts.sent;
        if seq.is_multiple_of(ACK_EVERY) {
            let body = wire::encode(wire::ACK, puts.handle, &item);
            let answer = self.shared.ask_async(self.owner, tag::PUT, &body, self.id);
            puts.due.push_back((seq, answer));
        } else {
            let body = wire::encode(0, puts.handle, &item);
            self.shared.tell(self.owner, tag::PUT, &body, self.id)?;
        }
        // Take the answers that came; wait while the window is full.
        let mut outcome = Ok(());
        while let Some((covers, oldest)) = puts.due.front() {
            let reply = if puts.sent - puts.acked > PUT_WINDOW {
                self.shared.wait_reply(oldest)
            } else {
                match oldest.try_recv() {
                    Ok(r) => Ok(r),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => Err(message("the communication thread has stopped")),
                }
            };
            puts.acked = *covers;
            puts.due.pop_front();
            if let Err(e) = reply.and_then(|r| self.failures(r)) {
                outcome = outcome.and(Err(e));
            }
        }
        outcome
    }

    /// Takes an item, waiting while the queue is empty.
    pub fn get(&self) -> Result<T, MpiError> {
        if let Some(q) = &self.local {
            self.stats.local();
            // Remote ranks' puts come through MPI: drive it while waiting
            // (no wake-up when one comes), then sleep on the queue.
            let now = || match q.queue().try_get() {
                Err(shmproc_core::TryRecvError::Empty) => None,
                r => Some(r),
            };
            if let Some(r) = self.shared.drive_until(now) {
                return r.map_err(message);
            }
            return q.queue().get().map_err(message);
        }
        self.stats.remote();
        let bytes = self.ask(tag::GET, &[])?;
        postcard::from_bytes(&bytes).map_err(message)
    }

    /// Sends a request to the owner and waits for its reply.
    fn ask(&self, kind: i32, body: &[u8]) -> Result<Vec<u8>, MpiError> {
        self.status(self.shared.ask(self.owner, kind, body, self.id)?)
    }
}

impl<T> DistQueue<T> {
    /// Waits until every put of this handle was acknowledged by the owner
    /// (its item is in the queue).
    ///
    /// # Errors
    ///
    /// The first of those puts that failed.
    pub fn flush(&self) -> Result<(), MpiError> {
        let mut puts = self.puts.lock().unwrap_or_else(PoisonError::into_inner);
        if puts.sent > puts.due.back().map_or(puts.acked, |d| d.0) {
            // Puts no answer covers yet: ask for one.
            let body = wire::encode(wire::ACK | wire::NO_ITEM, puts.handle, &[]);
            let answer = self.shared.ask_async(self.owner, tag::PUT, &body, self.id);
            let sent = puts.sent;
            puts.due.push_back((sent, answer));
        }
        let mut outcome = Ok(());
        while let Some((covers, oldest)) = puts.due.pop_front() {
            puts.acked = covers;
            if let Err(e) = self.shared.wait_reply(&oldest).and_then(|r| self.failures(r)) {
                outcome = outcome.and(Err(e));
            }
        }
        outcome
    }

    /// An answer to puts: the failures it reports, as an error.
    fn failures(&self, reply: Vec<u8>) -> Result<(), MpiError> {
        let why: Vec<String> = postcard::from_bytes(&self.status(reply)?).map_err(message)?;
        if why.is_empty() {
            return Ok(());
        }
        Err(MpiError::Refused {
            owner: self.owner,
            why: format!("{} put(s) failed: {}", why.len(), why.join("; ")),
        })
    }

    /// A reply's body, or the owner's refusal.
    fn status(&self, reply: Vec<u8>) -> Result<Vec<u8>, MpiError> {
        crate::world::status(self.owner, reply)
    }
}

impl<T> Drop for DistQueue<T> {
    fn drop(&mut self) {
        // A put of this handle is in the queue before the handle is gone.
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "a put of a dropped DistQueue failed");
        }
    }
}
