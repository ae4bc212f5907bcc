//! Manager containers and served objects across the job: a [`DistDict`],
//! [`DistList`], [`DistNamespace`] or [`DistProxy`] is owned by one rank.
//! Ranks on the owner's node map the container's segment (or the
//! manager's mailboxes) and use it in place, exactly as `shm`'s own
//! `Dict`, `List`, `Namespace` and `Proxy`; ranks on other nodes send each
//! operation to the owner as an MPI message, and a thread of the owner
//! runs it on its handle and replies.
//!
//! An atomic read-modify-write (`modify`) takes a function of this
//! executable, as a pool's task does: it travels as a code offset and runs
//! on the owner under the container's lock (a closure that captures
//! anything does not compile).

mod dict;
mod list;
mod namespace;
mod proxy;

use std::any::Any;
use std::sync::{Arc, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_manager::ManagerError;

use crate::code::conjure;
use crate::queue::Counters;
use crate::world::{MpiError, Request, Shared, World, status, tag};

pub use dict::DistDict;
pub use list::DistList;
pub use namespace::DistNamespace;
pub use proxy::DistProxy;

/// Where an object is for this rank.
enum Place<H> {
    /// In shared memory: this rank's handle.
    Here(H),
    /// On another node: asked through MPI.
    Remote(Remote),
}

impl<H> Place<H> {
    fn is_local(&self) -> bool {
        matches!(self, Self::Here(_))
    }

    /// Runs `here` on this rank's handle, or operation `code` with
    /// `body` on the owner; counts which.
    fn run<R: DeserializeOwned>(
        &self,
        stats: &Counters,
        here: impl FnOnce(&H) -> Result<R, ManagerError>,
        code: u8,
        body: impl FnOnce() -> Result<Vec<u8>, MpiError>,
    ) -> Result<R, MpiError> {
        match self {
            Self::Here(h) => {
                stats.local();
                Ok(here(h)?)
            }
            Self::Remote(r) => {
                stats.remote();
                r.call_as(code, &body()?)
            }
        }
    }
}

/// How a rank of another node reaches an object.
struct Remote {
    shared: Arc<Shared>,
    id: u32,
    owner: usize,
}

impl Remote {
    /// Runs operation `op` with `body` on the owner; its reply.
    fn call(&self, op: u8, body: &[u8]) -> Result<Vec<u8>, MpiError> {
        let mut msg = Vec::with_capacity(1 + body.len());
        msg.push(op);
        msg.extend_from_slice(body);
        status(self.owner, self.shared.ask(self.owner, tag::OBJECT, &msg, self.id)?)
    }

    /// As [`Self::call`], decoding the reply as `R`.
    fn call_as<R: DeserializeOwned>(&self, op: u8, body: &[u8]) -> Result<R, MpiError> {
        decode(&self.call(op, body)?)
    }
}

/// What the owner's thread runs for one request: the handle, the
/// operation, its body; the reply's body or why not.
type Op<H> = fn(&H, u8, &[u8]) -> Result<Vec<u8>, String>;

/// A read-modify-write sent by code offset: runs on the owner's handle
/// (downcast: a rank that named other types gets an error, not a
/// misread) with the request's body.
type Modify = fn(&dyn Any, &[u8]) -> Result<Vec<u8>, String>;

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, MpiError> {
    postcard::to_allocvec(value).map_err(|e| MpiError::Message(e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MpiError> {
    postcard::from_bytes(bytes).map_err(|e| MpiError::Message(e.to_string()))
}

/// The owner's side of an operation: encodes its outcome.
fn reply<R: Serialize>(r: Result<R, ManagerError>) -> Result<Vec<u8>, String> {
    let r = r.map_err(|e| e.to_string())?;
    postcard::to_allocvec(&r).map_err(|e| e.to_string())
}

/// Decodes a request's body on the owner.
fn args<A: DeserializeOwned>(body: &[u8]) -> Result<A, String> {
    postcard::from_bytes(body).map_err(|e| format!("arguments that do not decode: {e}"))
}

/// Resolves a `Modify` sent as `[code offset u64][rest]` and runs it.
fn run_modify(handle: &dyn Any, body: &[u8]) -> Result<Vec<u8>, String> {
    let (addr, rest) = crate::code::split(body)?;
    // SAFETY: `addr` lies inside this executable's code (checked above),
    // and every rank runs this very executable (checked by `World::init`
    // over MPI, which only the job's ranks can reach): the sender took the
    // offset of a `Modify` (a `modify_entry` monomorphised for its types)
    // at the same place. Its argument is `&dyn Any`, which it downcasts,
    // so types named differently on two ranks are an error, not a misread.
    let f = unsafe { std::mem::transmute::<usize, Modify>(addr) };
    f(handle, rest)
}

/// The code offset of `f`, the head of a modify request.
fn modify_offset(f: Modify) -> Result<Vec<u8>, MpiError> {
    crate::code::head(f as usize).map_err(MpiError::Message)
}

impl World {
    /// Makes an object owned by `owner` reachable from every rank: the
    /// owner makes it with `make` and serves it with `op`; ranks of its node
    /// open its handle (sent by reference); the others reach it through
    /// MPI. Every rank calls this, in the same order.
    fn share<H>(
        &mut self,
        owner: usize,
        make: impl FnOnce() -> Result<H, ManagerError>,
        op: Op<H>,
    ) -> Result<Place<H>, MpiError>
    where
        H: Serialize + DeserializeOwned + Clone + Send + 'static,
    {
        if owner >= self.size() {
            return Err(MpiError::NoSuchRank {
                rank: owner,
                size: self.size(),
            });
        }
        let id = self.next_id();
        let type_name = std::any::type_name::<H>();
        // [status][type name length u16][type name][handle]
        let mut ours = None;
        let mut msg = Vec::new();
        if self.rank() == owner {
            match make().map_err(|e| e.to_string()).and_then(|h| {
                let bytes = postcard::to_allocvec(&h).map_err(|e| e.to_string())?;
                Ok((h, bytes))
            }) {
                Ok((h, bytes)) => {
                    msg.push(0);
                    msg.extend_from_slice(&u16::try_from(type_name.len()).unwrap_or(0).to_le_bytes());
                    msg.extend_from_slice(type_name.as_bytes());
                    msg.extend_from_slice(&bytes);
                    ours = Some(h);
                }
                Err(why) => {
                    msg.push(1);
                    msg.extend_from_slice(why.as_bytes());
                }
            }
        }
        let got = self.broadcast_from(owner, msg)?;
        let handle = parse_share(&got, type_name).map_err(|why| MpiError::Refused { owner, why })?;
        let place = match ours {
            Some(h) => {
                let (to_serve, requests) = mpsc::channel::<Request>();
                self.shared.serve(id, self.shared.forward(to_serve));
                serve_object(&self.shared, requests, h.clone(), op);
                Place::Here(h)
            }
            None if self.same_node(owner) => Place::Here(decode(handle)?),
            None => Place::Remote(Remote {
                shared: Arc::clone(&self.shared),
                id,
                owner,
            }),
        };
        // Every rank of the owner's node opened its handle before the
        // owner goes on (a handle sent by reference is good while its
        // sender holds the object, which the owner does until it drops).
        self.barrier();
        Ok(place)
    }
}

/// Checks a shared object's announcement: its handle's bytes, or why the
/// owner could not make it.
fn parse_share<'a>(msg: &'a [u8], type_name: &str) -> Result<&'a [u8], String> {
    match msg.split_first() {
        Some((0, rest)) => {
            let n = usize::from(u16::from_le_bytes(
                rest.get(..2)
                    .and_then(|b| b.try_into().ok())
                    .ok_or("a short announcement")?,
            ));
            let theirs = rest.get(2..2 + n).ok_or("a short announcement")?;
            if theirs != type_name.as_bytes() {
                return Err(format!(
                    "the owner made a {}, this rank asked for a {type_name}",
                    String::from_utf8_lossy(theirs)
                ));
            }
            Ok(&rest[2 + n..])
        }
        Some((_, why)) => Err(format!(
            "it could not make the object: {}",
            String::from_utf8_lossy(why)
        )),
        None => Err("an empty announcement".into()),
    }
}

/// The owner's thread for one object: runs each request on its handle
/// (an operation may wait for the container's lock, so not on the
/// communication thread).
fn serve_object<H: Send + 'static>(shared: &Arc<Shared>, requests: mpsc::Receiver<Request>, handle: H, op: Op<H>) {
    let s = Arc::clone(shared);
    let run = move || {
        for r in requests {
            let out = match (r.kind, r.body.split_first()) {
                (tag::OBJECT, Some((&code, body))) => op(&handle, code, body),
                _ => Err("not a request an object takes".into()),
            };
            match out {
                Ok(b) => s.reply(r.from, r.reply_tag, Ok(&b)),
                Err(why) => s.reply(r.from, r.reply_tag, Err(&why)),
            }
        }
    };
    if let Err(e) = std::thread::Builder::new().name("shmproc-mpi-object".into()).spawn(run) {
        tracing::warn!(error = %e, "cannot start an object's serving thread");
    }
}
