//! [`DistProxy`]: an object of a manager process, served to every rank.

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_manager::{ManagerError, Proxy, Served};

use super::{Place, args, decode, encode, reply};
use crate::queue::{Counters, Traffic};
use crate::world::{MpiError, World};

mod op {
    pub(super) const CALL: u8 = 0;
    pub(super) const GETATTR: u8 = 1;
    pub(super) const SETATTR: u8 = 2;
    pub(super) const COPY: u8 = 3;
}

/// An instance of a user type served by a manager process on the owner's
/// node (Python's `BaseManager.register` + proxy), reachable from every
/// rank: ranks of that node call it through the manager's shared-memory
/// mailboxes, as a [`Proxy`]; ranks of other nodes send each call to the
/// owner, whose thread makes it on its `Proxy`. Made by
/// [`World::proxy`].
pub struct DistProxy<T> {
    place: Place<Proxy<T>>,
    stats: Counters,
}

impl<T> std::fmt::Debug for DistProxy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistProxy")
            .field("local", &self.place.is_local())
            .finish_non_exhaustive()
    }
}

impl World {
    /// Serves an instance to every rank: `make` runs on rank `owner` only
    /// and returns a proxy of an instance in a manager process it started
    /// (`Manager::builder().register::<T>().start()?.create(value)`,
    /// started before [`World::init`] is best: a manager process then never
    /// inherits MPI's state). Every rank calls this, in the same order.
    pub fn proxy<T: Served>(
        &mut self,
        owner: usize,
        make: impl FnOnce() -> Result<Proxy<T>, ManagerError>,
    ) -> Result<DistProxy<T>, MpiError> {
        Ok(DistProxy {
            place: self.share(owner, make, serve::<T>)?,
            stats: Counters::default(),
        })
    }
}

/// The owner's side: arguments, return values and attributes travel as
/// their serialised bytes, which the manager's methods decode.
fn serve<T: Served>(p: &Proxy<T>, code: u8, body: &[u8]) -> Result<Vec<u8>, String> {
    match code {
        op::CALL => {
            let (method, a) = args::<(String, Vec<u8>)>(body)?;
            reply(p.__call_raw(&method, a))
        }
        op::GETATTR => reply(p.__getattr_raw(&args::<String>(body)?)),
        op::SETATTR => {
            let (name, v) = args::<(String, Vec<u8>)>(body)?;
            reply(p.__setattr_raw(&name, v))
        }
        op::COPY => reply(p.__copy_raw()),
        _ => Err(format!("no proxy operation {code}")),
    }
}

impl<T: Served> DistProxy<T> {
    /// Whether this rank reaches the manager through shared memory.
    pub fn is_local(&self) -> bool {
        self.place.is_local()
    }

    /// How many calls of this rank went which way.
    pub fn stats(&self) -> Traffic {
        self.stats.get()
    }

    /// The proxy, on a rank of the owner's node.
    pub fn local(&self) -> Option<&Proxy<T>> {
        match &self.place {
            Place::Here(p) => Some(p),
            Place::Remote(_) => None,
        }
    }

    /// Runs `here` on the proxy, or operation `code` on the owner: the
    /// serialised value either way (only this rank knows its type).
    fn bytes(
        &self,
        here: impl FnOnce(&Proxy<T>) -> Result<Vec<u8>, ManagerError>,
        code: u8,
        body: impl FnOnce() -> Result<Vec<u8>, MpiError>,
    ) -> Result<Vec<u8>, MpiError> {
        self.place.run(&self.stats, here, code, body)
    }

    /// Calls method `method` with `args` (a tuple: `()`, `(x,)`, `(x, y)`)
    /// in the manager process and returns what it returns.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: A) -> Result<R, MpiError> {
        let a = encode(&args)?;
        decode(&self.bytes(|p| p.__call_raw(method, a.clone()), op::CALL, || encode(&(method, &a)))?)
    }

    /// Reads attribute `name`.
    pub fn getattr<R: DeserializeOwned>(&self, name: &str) -> Result<R, MpiError> {
        decode(&self.bytes(|p| p.__getattr_raw(name), op::GETATTR, || encode(name))?)
    }

    /// A copy of the whole instance as it is now.
    pub fn copy(&self) -> Result<T, MpiError> {
        decode(&self.bytes(Proxy::__copy_raw, op::COPY, || Ok(Vec::new()))?)
    }

    /// Sets attribute `name`.
    pub fn setattr<V: Serialize + ?Sized>(&self, name: &str, value: &V) -> Result<(), MpiError> {
        let v = encode(value)?;
        self.place.run(
            &self.stats,
            |p| p.__setattr_raw(name, v.clone()),
            op::SETATTR,
            || encode(&(name, &v)),
        )
    }
}
