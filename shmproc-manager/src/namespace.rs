//! [`Namespace`]: named attributes in shared memory (Python's
//! `Manager().Namespace()`), used in place.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dict::raw;
use crate::dict::{decode, encode};
use crate::error::ManagerError;
use crate::store::{self, Kind, Store, Tx};

/// Named attributes of any serde types, shared in place.
///
/// Reading an attribute that was never set (or was deleted) is
/// [`ManagerError::NoAttribute`] naming it. A value read is a copy: a list
/// read from a namespace and changed does not change the namespace until
/// it is set again, as in Python; [`Namespace::modify`] changes one in
/// place, in one step.
///
/// ```
/// # fn main() -> Result<(), shmproc_manager::ManagerError> {
/// let ns = shmproc_manager::Namespace::new()?;
/// assert!(ns.get::<u32>("x").is_err());
/// ns.set("x", &10u32)?;
/// ns.modify("x", |x: &mut u32| *x += 200)?;
/// assert_eq!(ns.get::<u32>("x")?, 210);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Namespace {
    store: Arc<Store>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace").field("names", &self.names().ok()).finish()
    }
}

fn no_attribute(name: &str) -> ManagerError {
    ManagerError::NoAttribute { name: name.to_owned() }
}

impl Namespace {
    /// A new namespace with no attributes.
    pub fn new() -> Result<Self, ManagerError> {
        Ok(Self {
            store: Store::create(Kind::Namespace)?,
        })
    }

    /// Attribute `name`, or [`ManagerError::NoAttribute`].
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, ManagerError> {
        let k = name.as_bytes();
        let h = raw::hash(k);
        let b = self
            .store
            .read(|s| raw::get(s, k, h))?
            .ok_or_else(|| no_attribute(name))?;
        decode("attribute", &b)
    }

    /// Sets attribute `name`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), ManagerError> {
        let v = crate::dict::encode_small("attribute", value)?;
        let k = name.as_bytes();
        let mut tx = Tx::begin(&self.store)?;
        raw::insert(&mut tx, k, &v, raw::hash(k), false)?;
        tx.commit()
    }

    /// Deletes attribute `name`, or [`ManagerError::NoAttribute`].
    pub fn delete(&self, name: &str) -> Result<(), ManagerError> {
        let k = name.as_bytes();
        let mut tx = Tx::begin(&self.store)?;
        raw::remove(&mut tx, k, raw::hash(k))?.ok_or_else(|| no_attribute(name))?;
        tx.commit()
    }

    /// Whether attribute `name` is set.
    pub fn contains(&self, name: &str) -> Result<bool, ManagerError> {
        let k = name.as_bytes();
        let h = raw::hash(k);
        Ok(self.store.read(|s| raw::get(s, k, h))?.is_some())
    }

    /// The names of the attributes set.
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        let items = self.store.read(|s| raw::items(s, true, false))?;
        items
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).map_err(|_| ManagerError::corrupted("an attribute name", 0)))
            .collect()
    }

    /// Attribute `name` as its serialised bytes (postcard), for a process
    /// that forwards it without knowing its type (`shmproc-mpi`). Not API.
    #[doc(hidden)]
    pub fn __get_raw(&self, name: &str) -> Result<Vec<u8>, ManagerError> {
        let k = name.as_bytes();
        let h = raw::hash(k);
        self.store
            .read(|s| raw::get(s, k, h))?
            .ok_or_else(|| no_attribute(name))
    }

    /// Sets attribute `name` to serialised bytes (postcard; they are
    /// checked when read as a type). Not API.
    #[doc(hidden)]
    pub fn __set_raw(&self, name: &str, bytes: &[u8]) -> Result<(), ManagerError> {
        let k = name.as_bytes();
        let mut tx = Tx::begin(&self.store)?;
        raw::insert(&mut tx, k, bytes, raw::hash(k), false)?;
        tx.commit()
    }

    /// Runs `f` on attribute `name` under the namespace's lock and stores
    /// the result, in one step; [`ManagerError::NoAttribute`] if unset.
    pub fn modify<T: Serialize + DeserializeOwned, R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut T) -> R,
    ) -> Result<R, ManagerError> {
        let key = name.as_bytes();
        let hk = raw::hash(key);
        let mut tx = Tx::begin(&self.store)?;
        let b = raw::get_locked(&tx, key, hk)?.ok_or_else(|| no_attribute(name))?;
        let mut v: T = decode("attribute", &b)?;
        let r = change(&mut v);
        raw::insert(&mut tx, key, &encode("attribute", &v)?, hk, false)?;
        tx.commit()?;
        Ok(r)
    }
}

impl Serialize for Namespace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        store::serialize(&self.store, serializer)
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            store: store::deserialize(deserializer, Kind::Namespace)?,
        })
    }
}
