//! [`Dict`]: a hash map in shared memory, read and written in place by every
//! process that holds a handle.

pub(crate) mod raw;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ManagerError;
use crate::store::{self, Kind, Store, Tx};

/// A dict in shared memory (Python's `Manager().dict()`), used in place:
/// every call reads or writes the segment directly, with no server hop.
///
/// Keys and values are any serde types (serialised with postcard; two keys
/// are the same key when they serialise to the same bytes), or
/// [`Dynamic`](crate::Dynamic) for Python's mixed keys and values. Clone a
/// handle to share it between threads; pass it to a child process as an
/// argument, like any shared object.
///
/// Reads take no lock and always see whole entries; writes take the dict's
/// lock, and a process killed inside any of them leaves the dict as it was
/// before that call or after it (see the crate docs). [`Dict::modify`]
/// reads, changes and writes back one entry under the lock, which is what
/// `d[k] += 1` needs and Python cannot do.
///
/// ```
/// # fn main() -> Result<(), shmproc_manager::ManagerError> {
/// let d = shmproc_manager::Dict::<String, u32>::new()?;
/// d.set(&"a".into(), &1)?;
/// d.modify(&"a".into(), |v| *v.get_or_insert(0) += 1)?;
/// assert_eq!(d.get(&"a".into())?, Some(2));
/// # Ok(()) }
/// ```
pub struct Dict<K, V> {
    store: Arc<Store>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dict")
            .field("len", &self.store.read(raw::len).ok())
            .finish_non_exhaustive()
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, ManagerError> {
    postcard::to_allocvec(value).map_err(|e| ManagerError::encode(what, &e))
}

/// A serialised key or value: on the stack when it is small (most keys
/// are), which spares an allocation per operation.
pub(crate) enum Encoded {
    Inline([u8; 64], usize),
    Heap(Vec<u8>),
}

impl std::ops::Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Inline(buf, n) => &buf[..*n],
            Self::Heap(v) => v,
        }
    }
}

/// As [`encode`], on the stack when it fits.
pub(crate) fn encode_small<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Encoded, ManagerError> {
    let mut buf = [0u8; 64];
    match postcard::to_slice(value, &mut buf) {
        Ok(used) => {
            let n = used.len();
            Ok(Encoded::Inline(buf, n))
        }
        Err(postcard::Error::SerializeBufferFull) => encode(what, value).map(Encoded::Heap),
        Err(e) => Err(ManagerError::encode(what, &e)),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ManagerError> {
    postcard::from_bytes(bytes).map_err(|e| ManagerError::encode(what, &e))
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// A new, empty dict in a new anonymous segment.
    pub fn new() -> Result<Self, ManagerError> {
        Ok(Self::from_store(Store::create(Kind::Dict)?))
    }

    pub(crate) fn from_store(store: Arc<Store>) -> Self {
        Self {
            store,
            _types: PhantomData,
        }
    }

    /// The value of `key`, if it is there.
    pub fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let k = encode_small("key", key)?;
        let h = raw::hash(&k);
        let bytes = self.store.read(|s| raw::get(s, &k, h))?;
        bytes.map(|b| decode("value", &b)).transpose()
    }

    /// The value of `key`, or [`ManagerError::KeyNotFound`] naming it
    /// (Python's `d[key]`).
    pub fn get_item(&self, key: &K) -> Result<V, ManagerError>
    where
        K: fmt::Debug,
    {
        self.get(key)?.ok_or_else(|| ManagerError::KeyNotFound {
            key: format!("{key:?}"),
        })
    }

    /// Whether `key` is there (Python's `key in d`).
    pub fn contains_key(&self, key: &K) -> Result<bool, ManagerError> {
        let k = encode_small("key", key)?;
        let h = raw::hash(&k);
        Ok(self.store.read(|s| raw::get(s, &k, h))?.is_some())
    }

    /// Sets `key` to `value` (Python's `d[key] = value`).
    pub fn set(&self, key: &K, value: &V) -> Result<(), ManagerError> {
        self.write_kv(key, value, false).map(drop)
    }

    /// Sets `key` to `value` and returns the value it replaced.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>, ManagerError> {
        self.write_kv(key, value, true)?
            .map(|b| decode("value", &b))
            .transpose()
    }

    fn write_kv(&self, key: &K, value: &V, want_old: bool) -> Result<Option<Vec<u8>>, ManagerError> {
        let (k, v) = (encode_small("key", key)?, encode_small("value", value)?);
        let h = raw::hash(&k);
        let mut tx = Tx::begin(&self.store)?;
        let old = raw::insert(&mut tx, &k, &v, h, want_old)?;
        tx.commit()?;
        Ok(old)
    }

    /// Removes `key`; returns its value if it was there.
    pub fn remove(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let k = encode_small("key", key)?;
        let h = raw::hash(&k);
        let mut tx = Tx::begin(&self.store)?;
        let old = raw::remove(&mut tx, &k, h)?;
        tx.commit()?;
        old.map(|b| decode("value", &b)).transpose()
    }

    /// Removes `key` and returns its value, or [`ManagerError::KeyNotFound`]
    /// (Python's `d.pop(key)` and `del d[key]`).
    pub fn pop(&self, key: &K) -> Result<V, ManagerError>
    where
        K: fmt::Debug,
    {
        self.remove(key)?.ok_or_else(|| ManagerError::KeyNotFound {
            key: format!("{key:?}"),
        })
    }

    /// The value of `key`; if absent, sets it to `default` first (Python's
    /// `setdefault`), in one step under the lock.
    pub fn setdefault(&self, key: &K, default: V) -> Result<V, ManagerError>
    where
        V: Clone,
    {
        self.modify(key, |v| v.get_or_insert(default).clone())
    }

    /// Runs `f` on the entry of `key` (`None` when absent) under the dict's
    /// lock and stores what it leaves: a value is set, `None` removes the
    /// key. Other writers wait meanwhile, so `d.modify(&k, |v| *v.get_or_insert(0) += 1)`
    /// from many processes loses no update. Returns what `f` returns.
    ///
    /// If `f` panics, the dict is left as it was.
    pub fn modify<R>(&self, key: &K, change: impl FnOnce(&mut Option<V>) -> R) -> Result<R, ManagerError> {
        let k = encode_small("key", key)?;
        let h = raw::hash(&k);
        let mut tx = Tx::begin(&self.store)?;
        let mut current: Option<V> = raw::get_locked(&tx, &k, h)?.map(|b| decode("value", &b)).transpose()?;
        let was = current.is_some();
        let r = change(&mut current);
        match current {
            Some(v) => {
                raw::insert(&mut tx, &k, &encode_small("value", &v)?, h, false)?;
            }
            None if was => {
                raw::remove(&mut tx, &k, h)?;
            }
            None => {}
        }
        tx.commit()?;
        Ok(r)
    }

    /// Number of keys.
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.store.read(raw::len)? as usize)
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Every key (one consistent snapshot).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        let items = self.store.read(|s| raw::items(s, true, false))?;
        items.iter().map(|(k, _)| decode("key", k)).collect()
    }

    /// Every value (one consistent snapshot).
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        let items = self.store.read(|s| raw::items(s, false, true))?;
        items.iter().map(|(_, v)| decode("value", v)).collect()
    }

    /// Every key and value (one consistent snapshot; iterate over it for
    /// Python's `for k, v in d.items()`).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        let items = self.store.read(|s| raw::items(s, true, true))?;
        items
            .iter()
            .map(|(k, v)| Ok((decode("key", k)?, decode("value", v)?)))
            .collect()
    }

    /// Sets every key of `items`, all in one step: a process killed inside
    /// it leaves none or all of them set.
    pub fn update<'a>(&self, items: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<(), ManagerError>
    where
        K: 'a,
        V: 'a,
    {
        let items = items
            .into_iter()
            .map(|(k, v)| Ok((encode("key", k)?, encode("value", v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        let mut tx = Tx::begin(&self.store)?;
        raw::update(&mut tx, &items)?;
        tx.commit()
    }

    /// Removes every key.
    pub fn clear(&self) -> Result<(), ManagerError> {
        let mut tx = Tx::begin(&self.store)?;
        raw::clear(&mut tx)?;
        tx.commit()
    }

    /// A copy of the whole dict.
    pub fn to_hashmap(&self) -> Result<HashMap<K, V>, ManagerError>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }
}

impl<K, V> Serialize for Dict<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        store::serialize(&self.store, serializer)
    }
}

impl<'de, K, V> Deserialize<'de> for Dict<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            store: store::deserialize(deserializer, Kind::Dict)?,
            _types: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests;
