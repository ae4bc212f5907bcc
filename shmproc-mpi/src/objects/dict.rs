//! [`DistDict`]: a manager dict owned by one rank and used by all.

use std::any::Any;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_manager::Dict;

use super::{Modify, Place, args, conjure, encode, modify_offset, reply, run_modify};
use crate::queue::{Counters, Traffic};
use crate::world::{MpiError, World};

mod op {
    pub(super) const GET: u8 = 0;
    pub(super) const SET: u8 = 1;
    pub(super) const INSERT: u8 = 2;
    pub(super) const REMOVE: u8 = 3;
    pub(super) const CONTAINS: u8 = 4;
    pub(super) const LEN: u8 = 5;
    pub(super) const KEYS: u8 = 6;
    pub(super) const VALUES: u8 = 7;
    pub(super) const ITEMS: u8 = 8;
    pub(super) const CLEAR: u8 = 9;
    pub(super) const SETDEFAULT: u8 = 10;
    pub(super) const MODIFY: u8 = 11;
    pub(super) const UPDATE: u8 = 12;
}

/// A [`Dict`] owned by one rank and used by every rank of the job, made by
/// [`World::dict`]: ranks on the owner's node read and write it in place
/// in shared memory (crash-safe, lock-free reads, as `Dict`); ranks on
/// other nodes send each operation to the owner. The same methods as
/// `Dict`; [`modify`](Self::modify) is an atomic read-modify-write from any
/// rank.
pub struct DistDict<K, V> {
    place: Place<Dict<K, V>>,
    stats: Counters,
}

impl<K, V> std::fmt::Debug for DistDict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistDict")
            .field("local", &self.place.is_local())
            .finish_non_exhaustive()
    }
}

impl World {
    /// A dict owned by rank `owner`, reachable from every rank. Every rank
    /// calls this, in the same order, with the same types.
    pub fn dict<K, V>(&mut self, owner: usize) -> Result<DistDict<K, V>, MpiError>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(DistDict {
            place: self.share(owner, Dict::new, serve::<K, V>)?,
            stats: Counters::default(),
        })
    }
}

/// The owner's side of every operation.
fn serve<K, V>(d: &Dict<K, V>, code: u8, body: &[u8]) -> Result<Vec<u8>, String>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    match code {
        op::GET => reply(d.get(&args::<K>(body)?)),
        op::SET => {
            let (k, v) = args::<(K, V)>(body)?;
            reply(d.set(&k, &v))
        }
        op::INSERT => {
            let (k, v) = args::<(K, V)>(body)?;
            reply(d.insert(&k, &v))
        }
        op::REMOVE => reply(d.remove(&args::<K>(body)?)),
        op::CONTAINS => reply(d.contains_key(&args::<K>(body)?)),
        op::LEN => reply(d.len()),
        op::KEYS => reply(d.keys()),
        op::VALUES => reply(d.values()),
        op::ITEMS => reply(d.items()),
        op::CLEAR => reply(d.clear()),
        op::SETDEFAULT => {
            let (k, v) = args::<(K, V)>(body)?;
            // The value, as it travels back: no clone of `V` needed.
            d.modify(&k, |slot| postcard::to_allocvec(slot.get_or_insert(v)))
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
        op::MODIFY => run_modify(d as &dyn Any, body),
        op::UPDATE => {
            let items = args::<Vec<(K, V)>>(body)?;
            reply(d.update(items.iter().map(|(k, v)| (k, v))))
        }
        _ => Err(format!("no dict operation {code}")),
    }
}

/// `modify` with `F` on the owner: the body is the key.
fn modify_entry<K, V, F, R>(handle: &dyn Any, body: &[u8]) -> Result<Vec<u8>, String>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
    F: Fn(&mut Option<V>) -> R + Copy + 'static,
    R: Serialize,
{
    let d = handle
        .downcast_ref::<Dict<K, V>>()
        .ok_or("a modify for a dict of other types")?;
    let key = args::<K>(body)?;
    let f = conjure::<F>();
    reply(d.modify(&key, |v| f(v)))
}

impl<K, V> DistDict<K, V>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// Whether this rank uses the dict in shared memory.
    pub fn is_local(&self) -> bool {
        self.place.is_local()
    }

    /// How many operations of this rank went which way.
    pub fn stats(&self) -> Traffic {
        self.stats.get()
    }

    fn run<R: DeserializeOwned>(
        &self,
        here: impl FnOnce(&Dict<K, V>) -> Result<R, shmproc_manager::ManagerError>,
        code: u8,
        body: impl FnOnce() -> Result<Vec<u8>, MpiError>,
    ) -> Result<R, MpiError> {
        self.place.run(&self.stats, here, code, body)
    }

    /// The value of `key`, if it is there.
    pub fn get(&self, key: &K) -> Result<Option<V>, MpiError> {
        self.run(|d| d.get(key), op::GET, || encode(key))
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: &K) -> Result<bool, MpiError> {
        self.run(|d| d.contains_key(key), op::CONTAINS, || encode(key))
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &K, value: &V) -> Result<(), MpiError> {
        self.run(|d| d.set(key, value), op::SET, || encode(&(key, value)))
    }

    /// Sets `key` to `value`; the value it had.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>, MpiError> {
        self.run(|d| d.insert(key, value), op::INSERT, || encode(&(key, value)))
    }

    /// Removes `key`; the value it had.
    pub fn remove(&self, key: &K) -> Result<Option<V>, MpiError> {
        self.run(|d| d.remove(key), op::REMOVE, || encode(key))
    }

    /// The value of `key`, setting it to `default` first if it is not
    /// there (Python's `setdefault`).
    pub fn setdefault(&self, key: &K, default: V) -> Result<V, MpiError> {
        match &self.place {
            Place::Here(d) => {
                self.stats.local();
                let mut default = Some(default);
                let v = d.modify(key, |slot| {
                    if slot.is_none() {
                        *slot = default.take();
                    }
                    slot.as_ref().map(postcard::to_allocvec)
                })?;
                match v {
                    Some(bytes) => super::decode(&bytes.map_err(|e| MpiError::Message(e.to_string()))?),
                    None => Err(MpiError::Message("setdefault left no value".into())),
                }
            }
            Place::Remote(r) => {
                self.stats.remote();
                r.call_as(op::SETDEFAULT, &encode(&(key, &default))?)
            }
        }
    }

    /// Runs `change` on `key`'s entry (`None` if absent; set it to `None`
    /// to remove it) under the dict's lock, in one step, and returns what
    /// it returns: `d[k] += 1` from every rank loses nothing. `change` is
    /// a function of this executable (or a closure that captures nothing):
    /// on another node it runs on the owner.
    ///
    /// ```compile_fail
    /// fn f(d: &shmproc_mpi::DistDict<String, u64>) {
    ///     let step = 2;
    ///     // Captures `step`: refused when it compiles.
    ///     let _ = d.modify(&"k".to_owned(), move |v: &mut Option<u64>| *v = Some(v.unwrap_or(0) + step));
    /// }
    /// let _used: fn(&shmproc_mpi::DistDict<String, u64>) = f;
    /// ```
    pub fn modify<F, R>(&self, key: &K, change: F) -> Result<R, MpiError>
    where
        F: Fn(&mut Option<V>) -> R + Copy + Send + 'static,
        R: Serialize + DeserializeOwned,
    {
        let entry: Modify = modify_entry::<K, V, F, R>;
        self.run(
            |d| d.modify(key, |v| change(v)),
            op::MODIFY,
            || {
                let mut body = modify_offset(entry)?;
                body.extend(encode(key)?);
                Ok(body)
            },
        )
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize, MpiError> {
        self.run(Dict::len, op::LEN, || Ok(Vec::new()))
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> Result<bool, MpiError> {
        Ok(self.len()? == 0)
    }

    /// The keys.
    pub fn keys(&self) -> Result<Vec<K>, MpiError> {
        self.run(Dict::keys, op::KEYS, || Ok(Vec::new()))
    }

    /// The values.
    pub fn values(&self) -> Result<Vec<V>, MpiError> {
        self.run(Dict::values, op::VALUES, || Ok(Vec::new()))
    }

    /// The entries.
    pub fn items(&self) -> Result<Vec<(K, V)>, MpiError> {
        self.run(Dict::items, op::ITEMS, || Ok(Vec::new()))
    }

    /// Sets every entry of `items`, all or none.
    pub fn update(&self, items: &[(K, V)]) -> Result<(), MpiError> {
        self.run(
            |d| d.update(items.iter().map(|(k, v)| (k, v))),
            op::UPDATE,
            || encode(items),
        )
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), MpiError> {
        self.run(Dict::clear, op::CLEAR, || Ok(Vec::new()))
    }

    /// The handle of the shared-memory dict, on a rank of the owner's node.
    pub fn local(&self) -> Option<&Dict<K, V>> {
        match &self.place {
            Place::Here(d) => Some(d),
            Place::Remote(_) => None,
        }
    }
}
