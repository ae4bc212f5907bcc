//! The list's algorithm on bytes: an array of element offsets, each element
//! a block `[len][bytes, padded to words]`.
//!
//! Root words: 0 the array's block (0 while it has never held anything),
//! 1 the length, 2 the array's capacity in elements.
//!
//! Appending writes the new elements' offsets past the length (no reader
//! looks there, and a rollback makes them garbage past the length again),
//! then the length. Setting one element swaps one word. Everything that
//! moves elements (insert, remove, reverse, sort, clear, a full array)
//! builds a new array in a fresh block and switches the root words to it:
//! the elements themselves never move.

use crate::error::ManagerError;
use crate::store::layout::{ROOT_OFF, words};
use crate::store::{Store, Tx};

const ARR: u64 = 0;
const LEN: u64 = 1;
const CAP: u64 = 2;
const MIN_CAP: u64 = 8;

/// The array, length and capacity, checked against the array's block.
fn array(s: &Store) -> Result<(u64, u64, u64), ManagerError> {
    let arr = s.load(ROOT_OFF + 8 * ARR)?;
    let len = s.load(ROOT_OFF + 8 * LEN)?;
    let cap = s.load(ROOT_OFF + 8 * CAP)?;
    if arr == 0 {
        return if len == 0 {
            Ok((0, 0, 0))
        } else {
            Err(ManagerError::corrupted("the list's length", len))
        };
    }
    let fits = cap
        .checked_mul(8)
        .is_some_and(|b| b <= s.block_capacity(arr).unwrap_or(0));
    if len > cap || !fits {
        return Err(ManagerError::corrupted("the list's capacity", cap));
    }
    Ok((arr, len, cap))
}

fn elem(s: &Store, e: u64) -> Result<Vec<u8>, ManagerError> {
    let cap = s.block_capacity(e)?;
    let n = s.load(e)?;
    if words(n).checked_add(8).is_none_or(|need| need > cap) {
        return Err(ManagerError::corrupted("an element's length", n));
    }
    s.read_bytes(e + 8, n)
}

pub(crate) fn len(s: &Store) -> Result<u64, ManagerError> {
    Ok(array(s)?.1)
}

/// Element `i`, or the length when `i` is past it.
pub(crate) fn get(s: &Store, i: u64) -> Result<Result<Vec<u8>, u64>, ManagerError> {
    let (arr, len, _) = array(s)?;
    if i >= len {
        return Ok(Err(len));
    }
    elem(s, s.load(arr + 8 * i)?).map(Ok)
}

/// Elements `start..end` (clamped to the length).
pub(crate) fn range(s: &Store, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ManagerError> {
    let (arr, len, _) = array(s)?;
    (start.min(len)..end.min(len))
        .map(|i| elem(s, s.load(arr + 8 * i)?))
        .collect()
}

/// Every element's offset.
fn offsets(s: &Store) -> Result<Vec<u64>, ManagerError> {
    let (arr, len, _) = array(s)?;
    (0..len).map(|i| s.load(arr + 8 * i)).collect()
}

fn new_elem(tx: &mut Tx<'_>, bytes: &[u8]) -> Result<u64, ManagerError> {
    let e = tx.alloc(8 + words(bytes.len() as u64), "element")?;
    tx.write_fresh(e, bytes.len() as u64)?;
    tx.write_fresh_bytes(e + 8, bytes)?;
    Ok(e)
}

/// Switches the list to a new array holding `elems`, and frees the old
/// array and `dropped`.
fn rebuild(tx: &mut Tx<'_>, elems: &[u64], dropped: &[u64]) -> Result<(), ManagerError> {
    let n = elems.len() as u64;
    let (old, _, _) = array(tx.store())?;
    let (arr, cap) = if n == 0 {
        (0, 0)
    } else {
        let cap = n.next_power_of_two().max(MIN_CAP);
        let arr = tx.alloc(cap * 8, "list array")?;
        for (i, &e) in elems.iter().enumerate() {
            tx.write_fresh(arr + 8 * i as u64, e)?;
        }
        (arr, cap)
    };
    tx.publish();
    tx.set_root(ARR, arr)?;
    tx.set_root(LEN, n)?;
    tx.set_root(CAP, cap)?;
    tx.free(old);
    for &e in dropped {
        tx.free(e);
    }
    Ok(())
}

/// Appends `items`.
pub(crate) fn extend(tx: &mut Tx<'_>, items: &[Vec<u8>]) -> Result<(), ManagerError> {
    let (arr, len, cap) = array(tx.store())?;
    let mut new = Vec::with_capacity(items.len());
    for it in items {
        new.push(new_elem(tx, it)?);
    }
    let n = len + new.len() as u64;
    if n > cap {
        let mut all = offsets(tx.store())?;
        all.extend(new);
        // Room to grow: the rebuilt array is a power of two past `n`.
        return rebuild(tx, &all, &[]);
    }
    for (i, e) in new.into_iter().enumerate() {
        tx.write_fresh(arr + 8 * (len + i as u64), e)?;
    }
    tx.publish();
    tx.set_root(LEN, n)
}

/// Replaces element `i`; returns the old bytes, or the length when `i` is
/// past it.
pub(crate) fn set(tx: &mut Tx<'_>, i: u64, bytes: &[u8]) -> Result<Result<Vec<u8>, u64>, ManagerError> {
    let (arr, len, _) = array(tx.store())?;
    if i >= len {
        return Ok(Err(len));
    }
    let old = tx.store().load(arr + 8 * i)?;
    let before = elem(tx.store(), old)?;
    let e = new_elem(tx, bytes)?;
    tx.publish();
    tx.set(arr + 8 * i, e)?;
    tx.free(old);
    Ok(Ok(before))
}

/// Inserts before `i` (at the end when `i` is past it).
pub(crate) fn insert(tx: &mut Tx<'_>, i: u64, bytes: &[u8]) -> Result<(), ManagerError> {
    let mut all = offsets(tx.store())?;
    let e = new_elem(tx, bytes)?;
    let at = usize::try_from(i).unwrap_or(usize::MAX).min(all.len());
    all.insert(at, e);
    rebuild(tx, &all, &[])
}

/// Removes element `i` and returns its bytes, or the length when `i` is
/// past it.
pub(crate) fn remove_at(tx: &mut Tx<'_>, i: u64) -> Result<Result<Vec<u8>, u64>, ManagerError> {
    let (arr, len, _) = array(tx.store())?;
    if i >= len {
        return Ok(Err(len));
    }
    let e = tx.store().load(arr + 8 * i)?;
    let bytes = elem(tx.store(), e)?;
    if i + 1 == len {
        tx.publish();
        tx.set_root(LEN, len - 1)?;
        tx.free(e);
    } else {
        let mut all = offsets(tx.store())?;
        all.remove(i as usize);
        rebuild(tx, &all, &[e])?;
    }
    Ok(Ok(bytes))
}

/// The first index holding `bytes`.
pub(crate) fn index(s: &Store, bytes: &[u8]) -> Result<Option<u64>, ManagerError> {
    let (arr, len, _) = array(s)?;
    for i in 0..len {
        if elem(s, s.load(arr + 8 * i)?)? == bytes {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Reorders the elements: `order[k]` is the old index of new element `k`
/// (a permutation of `0..len`).
pub(crate) fn permute(tx: &mut Tx<'_>, order: &[usize]) -> Result<(), ManagerError> {
    let all = offsets(tx.store())?;
    if order.len() != all.len() {
        return Err(ManagerError::corrupted("a permutation's length", order.len() as u64));
    }
    let elems: Vec<u64> = order.iter().map(|&k| all[k]).collect();
    rebuild(tx, &elems, &[])
}

/// Every element, under the transaction's lock.
pub(crate) fn all_locked(tx: &Tx<'_>) -> Result<Vec<Vec<u8>>, ManagerError> {
    range(tx.store(), 0, u64::MAX)
}

/// Replaces elements `start..end` (clamped) by `items`.
pub(crate) fn splice(tx: &mut Tx<'_>, start: u64, end: u64, items: &[Vec<u8>]) -> Result<(), ManagerError> {
    let mut all = offsets(tx.store())?;
    let n = all.len();
    let a = usize::try_from(start).unwrap_or(usize::MAX).min(n);
    let b = usize::try_from(end).unwrap_or(usize::MAX).clamp(a, n);
    let mut new = Vec::with_capacity(items.len());
    for it in items {
        new.push(new_elem(tx, it)?);
    }
    let dropped: Vec<u64> = all.splice(a..b, new).collect();
    rebuild(tx, &all, &dropped)
}
