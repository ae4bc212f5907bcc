//! [`List`]: a list in shared memory, read and written in place by every
//! process that holds a handle.

pub(crate) mod raw;

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dict::{decode, encode};
use crate::error::ManagerError;
use crate::store::{self, Kind, Store, Tx};

/// A list in shared memory (Python's `Manager().list()`), used in place.
///
/// Elements are any serde type (two are equal for [`List::index`] and
/// [`List::remove`] when they serialise to the same bytes), or
/// [`Dynamic`](crate::Dynamic). Every call is one step: a process killed
/// inside it leaves the list as before or after it. [`List::modify`]
/// changes one element in place under the lock.
///
/// ```
/// # fn main() -> Result<(), shmproc_manager::ManagerError> {
/// let l = shmproc_manager::List::<i32>::new()?;
/// l.extend(&[3, 1, 2])?;
/// l.sort()?;
/// l.reverse()?;
/// assert_eq!(l.to_vec()?, [3, 2, 1]);
/// # Ok(()) }
/// ```
pub struct List<T> {
    store: Arc<Store>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("len", &self.store.read(raw::len).ok())
            .finish_non_exhaustive()
    }
}

fn bounds(r: &impl RangeBounds<usize>) -> (u64, u64) {
    let start = match r.start_bound() {
        Bound::Included(&s) => s as u64,
        Bound::Excluded(&s) => s as u64 + 1,
        Bound::Unbounded => 0,
    };
    let end = match r.end_bound() {
        Bound::Included(&e) => e as u64 + 1,
        Bound::Excluded(&e) => e as u64,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

fn out_of_range(index: u64, len: u64) -> ManagerError {
    ManagerError::IndexOutOfRange {
        index: usize::try_from(index).unwrap_or(usize::MAX),
        len: usize::try_from(len).unwrap_or(usize::MAX),
    }
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// A new, empty list in a new anonymous segment.
    pub fn new() -> Result<Self, ManagerError> {
        Ok(Self {
            store: Store::create(Kind::List)?,
            _type: PhantomData,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.store.read(raw::len)? as usize)
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Element `i`, or [`ManagerError::IndexOutOfRange`] (Python's `l[i]`).
    pub fn get(&self, i: usize) -> Result<T, ManagerError> {
        match self.store.read(|s| raw::get(s, i as u64))? {
            Ok(b) => decode("element", &b),
            Err(len) => Err(out_of_range(i as u64, len)),
        }
    }

    /// Replaces element `i` (Python's `l[i] = value`).
    pub fn set(&self, i: usize, value: &T) -> Result<(), ManagerError> {
        let b = encode("element", value)?;
        let mut tx = Tx::begin(&self.store)?;
        if let Err(len) = raw::set(&mut tx, i as u64, &b)? {
            return Err(out_of_range(i as u64, len));
        }
        tx.commit()
    }

    /// Appends `value` (Python's `append`).
    pub fn push(&self, value: &T) -> Result<(), ManagerError> {
        let b = encode("element", value)?;
        let mut tx = Tx::begin(&self.store)?;
        raw::extend(&mut tx, &[b])?;
        tx.commit()
    }

    /// Python's name for [`List::push`].
    pub fn append(&self, value: &T) -> Result<(), ManagerError> {
        self.push(value)
    }

    /// Appends every item, all in one step.
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let items = items
            .into_iter()
            .map(|v| encode("element", v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = Tx::begin(&self.store)?;
        raw::extend(&mut tx, &items)?;
        tx.commit()
    }

    /// Inserts `value` before index `i` (at the end when `i` is past it,
    /// as Python does).
    pub fn insert(&self, i: usize, value: &T) -> Result<(), ManagerError> {
        let b = encode("element", value)?;
        let mut tx = Tx::begin(&self.store)?;
        raw::insert(&mut tx, i as u64, &b)?;
        tx.commit()
    }

    /// Removes and returns the last element, if any.
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        let mut tx = Tx::begin(&self.store)?;
        let len = tx.store().read_len()?;
        if len == 0 {
            return Ok(None);
        }
        let b = raw::remove_at(&mut tx, len - 1)?.map_err(|len| out_of_range(len, len))?;
        tx.commit()?;
        decode("element", &b).map(Some)
    }

    /// Removes and returns element `i` (Python's `pop(i)`).
    pub fn pop_at(&self, i: usize) -> Result<T, ManagerError> {
        let mut tx = Tx::begin(&self.store)?;
        let b = raw::remove_at(&mut tx, i as u64)?.map_err(|len| out_of_range(i as u64, len))?;
        tx.commit()?;
        decode("element", &b)
    }

    /// Removes the first element equal to `value`, or
    /// [`ManagerError::NotInList`].
    pub fn remove(&self, value: &T) -> Result<(), ManagerError> {
        let b = encode("element", value)?;
        let mut tx = Tx::begin(&self.store)?;
        let i = raw::index(tx.store(), &b)?.ok_or(ManagerError::NotInList)?;
        raw::remove_at(&mut tx, i)?.map_err(|len| out_of_range(i, len))?;
        tx.commit()
    }

    /// The first index of `value`, or [`ManagerError::NotInList`].
    pub fn index(&self, value: &T) -> Result<usize, ManagerError> {
        let b = encode("element", value)?;
        let i = self.store.read(|s| raw::index(s, &b))?;
        i.map(|i| i as usize).ok_or(ManagerError::NotInList)
    }

    /// Whether some element equals `value`.
    pub fn contains(&self, value: &T) -> Result<bool, ManagerError> {
        let b = encode("element", value)?;
        Ok(self.store.read(|s| raw::index(s, &b))?.is_some())
    }

    /// Reverses the list in place.
    pub fn reverse(&self) -> Result<(), ManagerError> {
        let mut tx = Tx::begin(&self.store)?;
        let n = tx.store().read_len()? as usize;
        let order: Vec<usize> = (0..n).rev().collect();
        raw::permute(&mut tx, &order)?;
        tx.commit()
    }

    /// Sorts the list (stable), in one step.
    pub fn sort(&self) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// Sorts the list (stable) with `cmp`, in one step.
    pub fn sort_by(&self, mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<(), ManagerError> {
        let mut tx = Tx::begin(&self.store)?;
        let items = raw::all_locked(&tx)?
            .iter()
            .map(|b| decode("element", b))
            .collect::<Result<Vec<T>, _>>()?;
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| cmp(&items[a], &items[b]));
        raw::permute(&mut tx, &order)?;
        tx.commit()
    }

    /// The elements in `range` (clamped to the length, as Python's slices
    /// are).
    pub fn range(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>, ManagerError> {
        let (a, b) = bounds(&range);
        let items = self.store.read(|s| raw::range(s, a, b))?;
        items.iter().map(|b| decode("element", b)).collect()
    }

    /// Replaces the elements in `range` by `items` (Python's
    /// `l[a:b] = items`), in one step.
    pub fn set_range<'a>(
        &self,
        range: impl RangeBounds<usize>,
        items: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let (a, b) = bounds(&range);
        let items = items
            .into_iter()
            .map(|v| encode("element", v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = Tx::begin(&self.store)?;
        raw::splice(&mut tx, a, b, &items)?;
        tx.commit()
    }

    /// Removes every element.
    pub fn clear(&self) -> Result<(), ManagerError> {
        let mut tx = Tx::begin(&self.store)?;
        raw::splice(&mut tx, 0, u64::MAX, &[])?;
        tx.commit()
    }

    /// Runs `f` on element `i` under the list's lock and stores the result
    /// (one step: nobody's write comes between the read and the write).
    pub fn modify<R>(&self, i: usize, change: impl FnOnce(&mut T) -> R) -> Result<R, ManagerError> {
        let mut tx = Tx::begin(&self.store)?;
        let b = raw::get(tx.store(), i as u64)?.map_err(|len| out_of_range(i as u64, len))?;
        let mut v: T = decode("element", &b)?;
        let r = change(&mut v);
        let b = encode("element", &v)?;
        raw::set(&mut tx, i as u64, &b)?.map_err(|len| out_of_range(i as u64, len))?;
        tx.commit()?;
        Ok(r)
    }

    /// A copy of the whole list.
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.range(..)
    }
}

impl Store {
    /// The list's length, read by a writer under the lock.
    pub(crate) fn read_len(&self) -> Result<u64, ManagerError> {
        raw::len(self)
    }
}

impl<T> Serialize for List<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        store::serialize(&self.store, serializer)
    }
}

impl<'de, T> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            store: store::deserialize(deserializer, Kind::List)?,
            _type: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests;
