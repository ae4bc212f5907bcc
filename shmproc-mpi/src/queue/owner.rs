//! The owner's side of a [`DistQueue`](super::DistQueue): serves the
//! other nodes' puts, gets, `task_done`s and `join`s.
//!
//! # Puts and their acknowledgements
//!
//! A remote put is `[flags u8][handle u32][item]` (see [`wire`]). Puts of
//! one handle arrive and are put in order. Most are not answered: a put
//! flagged [`wire::ACK`] (every [`ACK_EVERY`](super::ACK_EVERY)-th, and
//! the marker `flush` sends) is answered once it and every earlier put of
//! its handle is in the queue, with the reasons of the ones that failed
//! since the last answer. So a producer streams items without a round trip
//! each, and still learns of every failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_collections::queue::{JoinableQueue, Queue};

use super::Local;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::world::{Request, Shared, tag};

/// A remote put's header.
pub(super) mod wire {
    /// Answer this put once it and every earlier put of its handle is in
    /// the queue.
    pub(crate) const ACK: u8 = 1;
    /// No item: only the answer (`flush`).
    pub(crate) const NO_ITEM: u8 = 2;

    /// `[flags][handle][item]`.
    pub(crate) fn encode(flags: u8, handle: u32, item: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(5 + item.len());
        v.push(flags);
        v.extend_from_slice(&handle.to_le_bytes());
        v.extend_from_slice(item);
        v
    }

    pub(crate) fn decode(body: &[u8]) -> Option<(u8, u32, &[u8])> {
        let (&flags, rest) = body.split_first()?;
        let handle = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        Some((flags, handle, &rest[4..]))
    }
}

/// A producer: its rank and its handle's number there.
type Producer = (usize, u32);

/// Why puts failed, per producer, since its last answer.
type Failures = Arc<Mutex<HashMap<Producer, Vec<String>>>>;

/// A remote put that waits for room (or for the puts before it), on the
/// put thread.
struct Waiting<T> {
    producer: Producer,
    reply_tag: i32,
    ack: bool,
    item: Option<T>,
}

/// What the owner's handler hands to its threads.
struct Lanes<T> {
    puts: mpsc::Sender<Waiting<T>>,
    gets: mpsc::Sender<(usize, i32)>,
    joins: mpsc::Sender<Request>,
    /// Requests handed to the put and get threads and not yet done: while
    /// any is, later ones of the same kind go behind it.
    waiting_puts: Arc<AtomicU64>,
    waiting_gets: Arc<AtomicU64>,
    failures: Failures,
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        tracing::warn!(error = %e, "cannot start a serving thread");
    }
}

/// Notes why a put of `producer` failed, for its next answer.
fn failed(failures: &Failures, producer: Producer, why: String) {
    failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(producer)
        .or_default()
        .push(why);
}

/// Answers `producer`'s flagged put: the failures noted since its last
/// answer (none: every put went in).
fn answer(sh: &Shared, failures: &Failures, producer: Producer, reply_tag: i32) {
    let why = failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&producer)
        .unwrap_or_default();
    match postcard::to_allocvec(&why) {
        Ok(b) => sh.reply(producer.0, reply_tag, Ok(&b)),
        Err(e) => sh.reply(producer.0, reply_tag, Err(&e.to_string())),
    }
}

/// Serves queue `id` for the other ranks. On the thread that steps the
/// engine (no hand-off, so a round trip costs MPI's and little more) it
/// puts what fits and gets what is there; a put into a full queue or a get
/// from an empty one goes to a thread of its own (one for puts, one for
/// gets, so a full queue never stops the gets that would empty it), and
/// while one waits there, later ones queue behind it (first come, first
/// served). `join` waits on a third thread.
pub(super) fn serve<T: Serialize + DeserializeOwned + Send + 'static>(shared: &Arc<Shared>, id: u32, local: &Local<T>) {
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
        failures: Arc::default(),
    };
    let (sh, queue2, count, failures) = (
        Arc::clone(shared),
        queue.clone(),
        Arc::clone(&lanes.waiting_puts),
        Arc::clone(&lanes.failures),
    );
    spawn("shmproc-mpi-puts", move || {
        for w in put_rx {
            if let Some(item) = w.item
                && let Err(e) = queue2.put(item)
            {
                failed(&failures, w.producer, e.to_string());
            }
            if w.ack {
                answer(&sh, &failures, w.producer, w.reply_tag);
            }
            // Relaxed: a count; the channel orders the puts.
            count.fetch_sub(1, Ordering::Relaxed);
        }
    });
    let (sh, queue2, count) = (Arc::clone(shared), queue.clone(), Arc::clone(&lanes.waiting_gets));
    spawn("shmproc-mpi-gets", move || {
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
        spawn("shmproc-mpi-join", move || {
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

/// One request for a queue, on the thread that steps the engine: answered
/// at once when it can be, else handed to the thread that waits.
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
        tag::PUT => put(sh, queue, lanes, r),
        tag::GET => {
            // Relaxed: only this thread raises it, and a stale higher
            // value read here only sends this get behind the one the get
            // thread just answered.
            if lanes.waiting_gets.load(Ordering::Relaxed) == 0 {
                match queue.try_get() {
                    Ok(item) => {
                        return match postcard::to_allocvec(&item) {
                            Ok(b) => sh.reply(from, reply_tag, Ok(&b)),
                            Err(e) => refuse(&e.to_string()),
                        };
                    }
                    Err(shmproc_core::TryRecvError::Empty) => {}
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

/// A remote put (see the module docs).
fn put<T: Serialize + DeserializeOwned>(sh: &Shared, queue: &Queue<T>, lanes: &Lanes<T>, r: Request) {
    let Some((flags, handle, bytes)) = wire::decode(&r.body) else {
        return sh.reply(r.from, r.reply_tag, Err("a put without its header"));
    };
    let producer = (r.from, handle);
    let ack = flags & wire::ACK != 0;
    let mut item = None;
    if flags & wire::NO_ITEM == 0 {
        match postcard::from_bytes::<T>(bytes) {
            Ok(i) => item = Some(i),
            Err(e) => failed(&lanes.failures, producer, format!("an item that does not decode: {e}")),
        }
    }
    // Relaxed: as for gets (the put thread lowers it once a put is done).
    if lanes.waiting_puts.load(Ordering::Relaxed) == 0 {
        item = match item.map(|i| queue.try_put(i)) {
            None | Some(Ok(())) => None,
            Some(Err(shmproc_core::TrySendError::Full(i))) => Some(i),
            Some(Err(e)) => {
                failed(&lanes.failures, producer, e.to_string());
                None
            }
        };
        if item.is_none() {
            if ack {
                answer(sh, &lanes.failures, producer, r.reply_tag);
            }
            return;
        }
    }
    lanes.waiting_puts.fetch_add(1, Ordering::Relaxed);
    let waiting = Waiting {
        producer,
        reply_tag: r.reply_tag,
        ack,
        item,
    };
    if lanes.puts.send(waiting).is_err() {
        failed(&lanes.failures, producer, "the queue's put thread has ended".into());
        if ack {
            answer(sh, &lanes.failures, producer, r.reply_tag);
        }
    }
}
