//! [`DistQueue`]: a `Queue` owned by one rank and used by all.

use crate::sync::atomic::{AtomicU64, Ordering};
use std::marker::PhantomData;
use std::sync::{Arc, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shm_collections::queue::{JoinableQueue, Queue};

use crate::world::{MpiError, Request, Shared, World, tag};

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
            let n = format!("shm-mpi-{}-{id}", std::process::id());
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
                serve(&self.shared, id, &q);
                Some(q)
            }
            None if self.same_node(owner) && joinable => Some(Local::Joinable(JoinableQueue::open(&name)?)),
            None if self.same_node(owner) => Some(Local::Plain(Queue::open(&name)?)),
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
    pub fn stats(&self) -> Traffic {
        self.stats.get()
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) -> Result<(), MpiError> {
        if let Some(q) = &self.local {
            self.stats.local();
            return q.queue().put(item).map_err(message);
        }
        self.stats.remote();
        let body = postcard::to_allocvec(&item).map_err(message)?;
        self.ask(tag::PUT, &body).map(drop)
    }

    /// Takes an item, waiting while the queue is empty.
    pub fn get(&self) -> Result<T, MpiError> {
        if let Some(q) = &self.local {
            self.stats.local();
            return q.queue().get().map_err(message);
        }
        self.stats.remote();
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

/// A remote put that waits for room, on the put thread.
type Waiting<T> = (usize, i32, T);

/// What the owner's handler hands to its threads.
struct Lanes<T> {
    puts: mpsc::Sender<Waiting<T>>,
    gets: mpsc::Sender<(usize, i32)>,
    joins: mpsc::Sender<Request>,
    /// Requests handed to the put and get threads and not yet answered:
    /// while any is, later ones of the same kind go behind it.
    waiting_puts: Arc<AtomicU64>,
    waiting_gets: Arc<AtomicU64>,
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        tracing::warn!(error = %e, "cannot start a serving thread");
    }
}

/// Serves queue `id` for the other ranks. On the communication thread (no
/// hand-off, so a round trip costs MPI's and little more) it puts what fits
/// and gets what is there; a put into a full queue or a get from an empty
/// one goes to a thread of its own (one for puts, one for gets, so a full
/// queue never stops the gets that would empty it), and while one waits
/// there, later ones queue behind it (first come, first served). `join`
/// waits on a third thread.
fn serve<T: Serialize + DeserializeOwned + Send + 'static>(shared: &Arc<Shared>, id: u32, local: &Local<T>) {
    let queue = local.queue().clone();
    let joinable = match local {
        Local::Joinable(jq) => Some(jq.clone()),
        Local::Plain(_) => None,
    };
    let (puts, put_rx) = mpsc::channel::<Waiting<T>>();
    let (gets, get_rx) = mpsc::channel::<(usize, i32)>();
    let (joins, join_rx) = mpsc::channel::<Request>();
    let lanes = Lanes {
        puts,
        gets,
        joins,
        waiting_puts: Arc::new(AtomicU64::new(0)),
        waiting_gets: Arc::new(AtomicU64::new(0)),
    };
    let (sh, queue2, count) = (Arc::clone(shared), queue.clone(), Arc::clone(&lanes.waiting_puts));
    spawn("shm-mpi-puts", move || {
        for (from, reply_tag, item) in put_rx {
            match queue2.put(item) {
                Ok(()) => sh.reply(from, reply_tag, Ok(&[])),
                Err(e) => sh.reply(from, reply_tag, Err(&e.to_string())),
            }
            // Relaxed: a count; the channel orders the items.
            count.fetch_sub(1, Ordering::Relaxed);
        }
    });
    let (sh, queue2, count) = (Arc::clone(shared), queue.clone(), Arc::clone(&lanes.waiting_gets));
    spawn("shm-mpi-gets", move || {
        for (from, reply_tag) in get_rx {
            let item = queue2
                .get()
                .map_err(|e| e.to_string())
                .and_then(|item| postcard::to_allocvec(&item).map_err(|e| e.to_string()));
            match item {
                Ok(b) => sh.reply(from, reply_tag, Ok(&b)),
                Err(why) => sh.reply(from, reply_tag, Err(&why)),
            }
            // Relaxed: as above.
            count.fetch_sub(1, Ordering::Relaxed);
        }
    });
    if let Some(jq) = joinable.clone() {
        let sh = Arc::clone(shared);
        spawn("shm-mpi-join", move || {
            for r in join_rx {
                let done = match r.body.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) {
                    Some(u64::MAX) => {
                        jq.join();
                        true
                    }
                    Some(ms) => jq.join_timeout(std::time::Duration::from_millis(ms)),
                    None => {
                        sh.reply(r.from, r.reply_tag, Err("a join without its timeout"));
                        continue;
                    }
                };
                sh.reply(r.from, r.reply_tag, Ok(&[u8::from(done)]));
            }
        });
    }
    let sh = Arc::clone(shared);
    shared.serve(
        id,
        Box::new(move |r: Request| handle(&sh, &queue, joinable.as_ref(), &lanes, r)),
    );
}

/// One request for a queue, on the communication thread: answered at once
/// when it can be, else handed to the thread that waits.
fn handle<T: Serialize + DeserializeOwned>(
    sh: &Shared,
    queue: &Queue<T>,
    joinable: Option<&JoinableQueue<T>>,
    lanes: &Lanes<T>,
    r: Request,
) {
    let (from, reply_tag) = (r.from, r.reply_tag);
    let refuse = |why: &str| sh.reply(from, reply_tag, Err(why));
    match r.kind {
        tag::PUT => {
            let item = match postcard::from_bytes::<T>(&r.body) {
                Ok(item) => item,
                Err(e) => return refuse(&format!("an item that does not decode: {e}")),
            };
            // Relaxed: only this thread raises it, and a stale higher
            // value read here only sends this put behind the one the put
            // thread just answered.
            let item = if lanes.waiting_puts.load(Ordering::Relaxed) == 0 {
                match queue.try_put(item) {
                    Ok(()) => return sh.reply(from, reply_tag, Ok(&[])),
                    Err(shm_core::TrySendError::Full(item)) => item,
                    Err(e) => return refuse(&e.to_string()),
                }
            } else {
                item
            };
            lanes.waiting_puts.fetch_add(1, Ordering::Relaxed);
            if lanes.puts.send((from, reply_tag, item)).is_err() {
                refuse("the queue's put thread has ended");
            }
        }
        tag::GET => {
            // Relaxed: as for puts.
            if lanes.waiting_gets.load(Ordering::Relaxed) == 0 {
                match queue.try_get() {
                    Ok(item) => {
                        return match postcard::to_allocvec(&item) {
                            Ok(b) => sh.reply(from, reply_tag, Ok(&b)),
                            Err(e) => refuse(&e.to_string()),
                        };
                    }
                    Err(shm_core::TryRecvError::Empty) => {}
                    Err(e) => return refuse(&e.to_string()),
                }
            }
            lanes.waiting_gets.fetch_add(1, Ordering::Relaxed);
            if lanes.gets.send((from, reply_tag)).is_err() {
                refuse("the queue's get thread has ended");
            }
        }
        tag::TASK_DONE => match joinable {
            Some(jq) => match jq.task_done() {
                Ok(()) => sh.reply(from, reply_tag, Ok(&[])),
                Err(e) => refuse(&e.to_string()),
            },
            None => refuse("task_done on a queue that is not joinable"),
        },
        tag::JOIN if joinable.is_some() => {
            if lanes.joins.send(r).is_err() {
                refuse("the queue's join thread has ended");
            }
        }
        tag::JOIN => refuse("join on a queue that is not joinable"),
        _ => refuse("not a request a queue takes"),
    }
}

/// A [`DistQueue`] that counts unfinished tasks (Python's
/// `JoinableQueue`), made by [`World::joinable_queue`]: every put adds
/// one, every [`task_done`](Self::task_done) from any rank takes one, and
/// [`join`](Self::join) on any rank waits for none. Derefs to the
/// [`DistQueue`] for `put` and `get`.
pub struct DistJoinableQueue<T> {
    queue: DistQueue<T>,
}

impl<T> std::fmt::Debug for DistJoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistJoinableQueue").field("queue", &self.queue).finish()
    }
}

impl<T> std::ops::Deref for DistJoinableQueue<T> {
    type Target = DistQueue<T>;
    fn deref(&self) -> &DistQueue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> DistJoinableQueue<T> {
    /// Says that a task taken from the queue is finished.
    ///
    /// # Errors
    ///
    /// [`MpiError::Refused`] (or, in shared memory,
    /// [`MpiError::Message`]) when called more times than items were put.
    pub fn task_done(&self) -> Result<(), MpiError> {
        let q = &self.queue;
        if let Some(Local::Joinable(j)) = &q.local {
            q.stats.local();
            return j.task_done().map_err(message);
        }
        q.stats.remote();
        q.ask(tag::TASK_DONE, &[]).map(drop)
    }

    /// Waits until every item put (by any rank) has been marked done.
    ///
    /// # Errors
    ///
    /// Only for a remote owner that could not be asked.
    pub fn join(&self) -> Result<(), MpiError> {
        self.join_until(None).map(drop)
    }

    /// Waits up to `timeout`; whether every item was marked done.
    ///
    /// # Errors
    ///
    /// As [`Self::join`].
    pub fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool, MpiError> {
        self.join_until(Some(timeout))
    }

    fn join_until(&self, timeout: Option<std::time::Duration>) -> Result<bool, MpiError> {
        let q = &self.queue;
        if let Some(Local::Joinable(j)) = &q.local {
            q.stats.local();
            return Ok(match timeout {
                None => {
                    j.join();
                    true
                }
                Some(t) => j.join_timeout(t),
            });
        }
        q.stats.remote();
        let ms = timeout.map_or(u64::MAX, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX - 1));
        let reply = q.ask(tag::JOIN, &ms.to_le_bytes())?;
        Ok(reply.first() == Some(&1))
    }

    /// Items put and not yet marked done, on a rank of the owner's node
    /// (`None` elsewhere).
    pub fn unfinished(&self) -> Option<usize> {
        match &self.queue.local {
            Some(Local::Joinable(j)) => Some(j.unfinished()),
            _ => None,
        }
    }
}
