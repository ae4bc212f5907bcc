//! [`DistNamespace`]: a manager namespace owned by one rank and used by all.

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_manager::Namespace;

use super::{Place, args, decode, encode, reply};
use crate::queue::{Counters, Traffic};
use crate::world::{MpiError, World};

mod op {
    pub(super) const GET: u8 = 0;
    pub(super) const SET: u8 = 1;
    pub(super) const DELETE: u8 = 2;
    pub(super) const CONTAINS: u8 = 3;
    pub(super) const NAMES: u8 = 4;
}

/// A [`Namespace`] owned by one rank and used by every rank of the job,
/// made by [`World::namespace`]: in place in shared memory on the owner's
/// node, through the owner on other nodes.
pub struct DistNamespace {
    place: Place<Namespace>,
    stats: Counters,
}

impl std::fmt::Debug for DistNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistNamespace")
            .field("local", &self.place.is_local())
            .finish_non_exhaustive()
    }
}

impl World {
    /// A namespace owned by rank `owner`, reachable from every rank. Every
    /// rank calls this, in the same order.
    pub fn namespace(&mut self, owner: usize) -> Result<DistNamespace, MpiError> {
        Ok(DistNamespace {
            place: self.share(owner, Namespace::new, serve)?,
            stats: Counters::default(),
        })
    }
}

/// The owner's side: attributes travel as their serialised bytes, which
/// only the reading rank decodes as its type.
fn serve(ns: &Namespace, code: u8, body: &[u8]) -> Result<Vec<u8>, String> {
    match code {
        op::GET => reply(ns.__get_raw(&args::<String>(body)?)),
        op::SET => {
            let (name, bytes) = args::<(String, Vec<u8>)>(body)?;
            reply(ns.__set_raw(&name, &bytes))
        }
        op::DELETE => reply(ns.delete(&args::<String>(body)?)),
        op::CONTAINS => reply(ns.contains(&args::<String>(body)?)),
        op::NAMES => reply(ns.names()),
        _ => Err(format!("no namespace operation {code}")),
    }
}

impl DistNamespace {
    /// Whether this rank uses the namespace in shared memory.
    pub fn is_local(&self) -> bool {
        self.place.is_local()
    }

    /// How many operations of this rank went which way.
    pub fn stats(&self) -> Traffic {
        self.stats.get()
    }

    /// Attribute `name` (an error naming it if it is not set).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, MpiError> {
        // Its serialised bytes either way (only this rank knows `T`).
        let bytes: Vec<u8> = self
            .place
            .run(&self.stats, |ns| ns.__get_raw(name), op::GET, || encode(name))?;
        decode(&bytes)
    }

    /// Sets attribute `name`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), MpiError> {
        let v = encode(value)?;
        self.place.run(
            &self.stats,
            |ns| ns.__set_raw(name, &v),
            op::SET,
            || encode(&(name, &v)),
        )
    }

    /// Deletes attribute `name` (an error naming it if it is not set).
    pub fn delete(&self, name: &str) -> Result<(), MpiError> {
        self.place
            .run(&self.stats, |ns| ns.delete(name), op::DELETE, || encode(name))
    }

    /// Whether attribute `name` is set.
    pub fn contains(&self, name: &str) -> Result<bool, MpiError> {
        self.place
            .run(&self.stats, |ns| ns.contains(name), op::CONTAINS, || encode(name))
    }

    /// The names of the attributes set.
    pub fn names(&self) -> Result<Vec<String>, MpiError> {
        self.place
            .run(&self.stats, Namespace::names, op::NAMES, || Ok(Vec::new()))
    }
}
