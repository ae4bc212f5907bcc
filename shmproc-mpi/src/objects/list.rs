//! [`DistList`]: a manager list owned by one rank and used by all.

use std::any::Any;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_manager::List;

use super::{Modify, Place, args, conjure, encode, modify_offset, reply, run_modify};
use crate::queue::{Counters, Traffic};
use crate::world::{MpiError, World};

mod op {
    pub(super) const LEN: u8 = 0;
    pub(super) const GET: u8 = 1;
    pub(super) const SET: u8 = 2;
    pub(super) const PUSH: u8 = 3;
    pub(super) const POP: u8 = 4;
    pub(super) const EXTEND: u8 = 5;
    pub(super) const TO_VEC: u8 = 6;
    pub(super) const CLEAR: u8 = 7;
    pub(super) const MODIFY: u8 = 8;
    pub(super) const INSERT: u8 = 9;
    pub(super) const CONTAINS: u8 = 10;
}

/// A [`List`] owned by one rank and used by every rank of the job, made by
/// [`World::list`]: in place in shared memory on the owner's node, through
/// the owner on other nodes. The same methods as `List`.
pub struct DistList<T> {
    place: Place<List<T>>,
    stats: Counters,
}

impl<T> std::fmt::Debug for DistList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistList")
            .field("local", &self.place.is_local())
            .finish_non_exhaustive()
    }
}

impl World {
    /// A list owned by rank `owner`, reachable from every rank. Every rank
    /// calls this, in the same order, with the same type.
    pub fn list<T>(&mut self, owner: usize) -> Result<DistList<T>, MpiError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(DistList {
            place: self.share(owner, List::new, serve::<T>)?,
            stats: Counters::default(),
        })
    }
}

/// The owner's side of every operation.
fn serve<T: Serialize + DeserializeOwned + 'static>(l: &List<T>, code: u8, body: &[u8]) -> Result<Vec<u8>, String> {
    match code {
        op::LEN => reply(l.len()),
        op::GET => reply(l.get(args(body)?)),
        op::SET => {
            let (i, v) = args::<(usize, T)>(body)?;
            reply(l.set(i, &v))
        }
        op::PUSH => reply(l.push(&args(body)?)),
        op::POP => reply(l.pop()),
        op::EXTEND => reply(l.extend(&args::<Vec<T>>(body)?)),
        op::TO_VEC => reply(l.to_vec()),
        op::CLEAR => reply(l.clear()),
        op::MODIFY => run_modify(l as &dyn Any, body),
        op::INSERT => {
            let (i, v) = args::<(usize, T)>(body)?;
            reply(l.insert(i, &v))
        }
        op::CONTAINS => reply(l.contains(&args(body)?)),
        _ => Err(format!("no list operation {code}")),
    }
}

/// `modify` with `F` on the owner: the body is the index.
fn modify_entry<T, F, R>(handle: &dyn Any, body: &[u8]) -> Result<Vec<u8>, String>
where
    T: Serialize + DeserializeOwned + 'static,
    F: Fn(&mut T) -> R + Copy + 'static,
    R: Serialize,
{
    let l = handle
        .downcast_ref::<List<T>>()
        .ok_or("a modify for a list of another type")?;
    let i = args::<usize>(body)?;
    let f = conjure::<F>();
    reply(l.modify(i, |v| f(v)))
}

impl<T: Serialize + DeserializeOwned + Send + 'static> DistList<T> {
    /// Whether this rank uses the list in shared memory.
    pub fn is_local(&self) -> bool {
        self.place.is_local()
    }

    /// How many operations of this rank went which way.
    pub fn stats(&self) -> Traffic {
        self.stats.get()
    }

    /// The handle of the shared-memory list, on a rank of the owner's node.
    pub fn local(&self) -> Option<&List<T>> {
        match &self.place {
            Place::Here(l) => Some(l),
            Place::Remote(_) => None,
        }
    }

    fn run<R: DeserializeOwned>(
        &self,
        here: impl FnOnce(&List<T>) -> Result<R, shmproc_manager::ManagerError>,
        code: u8,
        body: impl FnOnce() -> Result<Vec<u8>, MpiError>,
    ) -> Result<R, MpiError> {
        match &self.place {
            Place::Here(l) => {
                self.stats.local();
                Ok(here(l)?)
            }
            Place::Remote(r) => {
                self.stats.remote();
                r.call_as(code, &body()?)
            }
        }
    }

    /// Number of items.
    pub fn len(&self) -> Result<usize, MpiError> {
        self.run(List::len, op::LEN, || Ok(Vec::new()))
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> Result<bool, MpiError> {
        Ok(self.len()? == 0)
    }

    /// Item `i` (an error past the end).
    pub fn get(&self, i: usize) -> Result<T, MpiError> {
        self.run(|l| l.get(i), op::GET, || encode(&i))
    }

    /// Sets item `i`.
    pub fn set(&self, i: usize, value: &T) -> Result<(), MpiError> {
        self.run(|l| l.set(i, value), op::SET, || encode(&(i, value)))
    }

    /// Appends `value` (Python's `append`).
    pub fn push(&self, value: &T) -> Result<(), MpiError> {
        self.run(|l| l.push(value), op::PUSH, || encode(value))
    }

    /// Inserts `value` before item `i`.
    pub fn insert(&self, i: usize, value: &T) -> Result<(), MpiError> {
        self.run(|l| l.insert(i, value), op::INSERT, || encode(&(i, value)))
    }

    /// Removes and returns the last item.
    pub fn pop(&self) -> Result<Option<T>, MpiError> {
        self.run(List::pop, op::POP, || Ok(Vec::new()))
    }

    /// Appends every item of `items`, in one step.
    pub fn extend(&self, items: &[T]) -> Result<(), MpiError> {
        self.run(|l| l.extend(items), op::EXTEND, || encode(items))
    }

    /// Whether `value` is in the list.
    pub fn contains(&self, value: &T) -> Result<bool, MpiError> {
        self.run(|l| l.contains(value), op::CONTAINS, || encode(value))
    }

    /// Runs `change` on item `i` under the list's lock, in one step, and
    /// returns what it returns. `change` is a function of this executable
    /// (or a closure that captures nothing).
    pub fn modify<F, R>(&self, i: usize, change: F) -> Result<R, MpiError>
    where
        F: Fn(&mut T) -> R + Copy + Send + 'static,
        R: Serialize + DeserializeOwned,
    {
        let entry: Modify = modify_entry::<T, F, R>;
        self.run(
            |l| l.modify(i, |v| change(v)),
            op::MODIFY,
            || {
                let mut body = modify_offset(entry)?;
                body.extend(encode(&i)?);
                Ok(body)
            },
        )
    }

    /// Every item, in order.
    pub fn to_vec(&self) -> Result<Vec<T>, MpiError> {
        self.run(List::to_vec, op::TO_VEC, || Ok(Vec::new()))
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<(), MpiError> {
        self.run(List::clear, op::CLEAR, || Ok(Vec::new()))
    }
}
