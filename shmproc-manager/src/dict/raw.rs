//! The dict's algorithm on bytes: an open-addressing hash table of
//! (hash, entry) slots whose entries are blocks holding a key and a value,
//! both serialised.
//!
//! Root words: 0 the table's block (0 before the first insert), 1 the
//! number of keys, 2 the slots in use (keys and tombstones), 3 the table's
//! capacity in slots (a power of two).
//!
//! An entry is `[key len][value len][key, padded to words][value, padded]`.
//! A slot's entry word is [`EMPTY`], [`TOMB`] (a removed key) or an
//! entry's offset. Probing is linear and bounded by the capacity, so a
//! scribbled table ends a search instead of looping.
//!
//! Setting a key builds its new entry in a fresh block, then changes the
//! slot's words; growing builds the whole new table in a fresh block and
//! switches root word 0 to it, so readers keep reading the old table (and
//! writers of other processes wait only for the lock) meanwhile.

use crate::error::ManagerError;
use crate::store::layout::{ROOT_OFF, words};
use crate::store::{Store, Tx};

pub(crate) const EMPTY: u64 = 0;
pub(crate) const TOMB: u64 = 1;

const TABLE: u64 = 0;
const LEN: u64 = 1;
const USED: u64 = 2;
const CAP: u64 = 3;

/// Smallest table.
const MIN_CAP: u64 = 8;
/// Past this many items at once, `update` builds a new table instead of
/// logging each slot it changes.
const BULK: usize = 1024;

/// The hash of a serialised key: 8 bytes at a time, mixed, then finalised
/// (`MurmurHash3`'s `fmix64`). Fixed, so every process agrees.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .rotate_left(31);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

fn root(s: &Store, i: u64) -> Result<u64, ManagerError> {
    s.load(ROOT_OFF + 8 * i)
}

/// The table and its capacity, checked against its block; `None` before
/// the first insert.
fn table(s: &Store) -> Result<Option<(u64, u64)>, ManagerError> {
    let t = root(s, TABLE)?;
    if t == 0 {
        return Ok(None);
    }
    let cap = root(s, CAP)?;
    let fits = cap
        .checked_mul(16)
        .is_some_and(|b| b <= s.block_capacity(t).unwrap_or(0));
    if !cap.is_power_of_two() || !fits {
        return Err(ManagerError::corrupted("the dict's capacity", cap));
    }
    Ok(Some((t, cap)))
}

/// An entry's key and value lengths, checked against its block.
fn entry_lens(s: &Store, e: u64) -> Result<(u64, u64), ManagerError> {
    let cap = s.block_capacity(e)?;
    let k = s.load(e)?;
    let v = s.load(e + 8)?;
    let need = words(k).checked_add(words(v)).and_then(|n| n.checked_add(16));
    if need.is_none_or(|n| n > cap) {
        return Err(ManagerError::corrupted("an entry's length", k.max(v)));
    }
    Ok((k, v))
}

fn entry_key_is(s: &Store, e: u64, key: &[u8]) -> Result<bool, ManagerError> {
    let (k, _) = entry_lens(s, e)?;
    Ok(k == key.len() as u64 && s.bytes_eq(e + 16, key)?)
}

pub(crate) fn entry_value(s: &Store, e: u64) -> Result<Vec<u8>, ManagerError> {
    let (k, v) = entry_lens(s, e)?;
    s.read_bytes(e + 16 + words(k), v)
}

fn entry_key(s: &Store, e: u64) -> Result<Vec<u8>, ManagerError> {
    let (k, _) = entry_lens(s, e)?;
    s.read_bytes(e + 16, k)
}

/// Where `key` is: `Ok(Found(slot, entry))`, or the slot a new key goes to
/// (the first tombstone met, else the empty slot that ended the search).
enum Probe {
    Found(u64, u64),
    Vacant(u64, bool),
}

fn probe(s: &Store, t: u64, cap: u64, key: &[u8], hk: u64) -> Result<Probe, ManagerError> {
    let mask = cap - 1;
    let mut i = hk & mask;
    let mut tomb = None;
    for _ in 0..cap {
        let slot = t + 16 * i;
        let e = s.load(slot + 8)?;
        if e == EMPTY {
            return Ok(match tomb {
                Some(t) => Probe::Vacant(t, false),
                None => Probe::Vacant(slot, true),
            });
        }
        if e == TOMB {
            tomb.get_or_insert(slot);
        } else if s.load(slot)? == hk && entry_key_is(s, e, key)? {
            return Ok(Probe::Found(slot, e));
        }
        i = (i + 1) & mask;
    }
    match tomb {
        Some(t) => Ok(Probe::Vacant(t, false)),
        None => Err(ManagerError::corrupted("a full dict table", cap)),
    }
}

/// Reads: each runs inside `Store::read`.
pub(crate) fn get(s: &Store, key: &[u8], hk: u64) -> Result<Option<Vec<u8>>, ManagerError> {
    let Some((t, cap)) = table(s)? else { return Ok(None) };
    match probe(s, t, cap, key, hk)? {
        Probe::Found(_, e) => entry_value(s, e).map(Some),
        Probe::Vacant(..) => Ok(None),
    }
}

pub(crate) fn len(s: &Store) -> Result<u64, ManagerError> {
    root(s, LEN)
}

/// Every entry's offset, in table order.
fn entries(s: &Store) -> Result<Vec<u64>, ManagerError> {
    let Some((t, cap)) = table(s)? else {
        return Ok(Vec::new());
    };
    let n = root(s, LEN)?;
    // A hint only: `n` and `cap` come from shared memory.
    let mut out = Vec::with_capacity(n.min(cap).min(1 << 16) as usize);
    for i in 0..cap {
        let e = s.load(t + 16 * i + 8)?;
        if e > TOMB {
            out.push(e);
        }
    }
    Ok(out)
}

/// Every key and value, serialised, with `keys`/`values` choosing which.
/// Serialised (key, value) pairs.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn items(s: &Store, keys: bool, values: bool) -> Result<Pairs, ManagerError> {
    entries(s)?
        .into_iter()
        .map(|e| {
            let k = if keys { entry_key(s, e)? } else { Vec::new() };
            let v = if values { entry_value(s, e)? } else { Vec::new() };
            Ok((k, v))
        })
        .collect()
}

/// Writes: each runs inside one transaction.
fn new_entry(tx: &mut Tx<'_>, key: &[u8], value: &[u8]) -> Result<u64, ManagerError> {
    let len = 16 + words(key.len() as u64) + words(value.len() as u64);
    let e = tx.alloc(len, "entry")?;
    tx.write_fresh(e, key.len() as u64)?;
    tx.write_fresh(e + 8, value.len() as u64)?;
    tx.write_fresh_bytes(e + 16, key)?;
    tx.write_fresh_bytes(e + 16 + words(key.len() as u64), value)?;
    Ok(e)
}

/// A zeroed table of `cap` slots holding `entries` (offset, hash); returns
/// its block.
fn build_table(tx: &mut Tx<'_>, cap: u64, entries: &[(u64, u64)]) -> Result<u64, ManagerError> {
    let bytes = cap.checked_mul(16).ok_or(ManagerError::TooLarge {
        what: "table",
        len: cap,
        max: u64::MAX / 16,
    })?;
    let t = tx.alloc(bytes, "table")?;
    for w in 0..cap * 2 {
        tx.write_fresh(t + 8 * w, 0)?;
    }
    let s = tx.store();
    let mask = cap - 1;
    for &(e, h) in entries {
        let mut i = h & mask;
        while s.load(t + 16 * i + 8)? != EMPTY {
            i = (i + 1) & mask;
        }
        tx.write_fresh(t + 16 * i, h)?;
        tx.write_fresh(t + 16 * i + 8, e)?;
    }
    Ok(t)
}

/// Every live (entry, hash) of the current table.
fn live(s: &Store) -> Result<Vec<(u64, u64)>, ManagerError> {
    let Some((t, cap)) = table(s)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for i in 0..cap {
        let e = s.load(t + 16 * i + 8)?;
        if e > TOMB {
            out.push((e, s.load(t + 16 * i)?));
        }
    }
    Ok(out)
}

fn cap_for(n: u64) -> u64 {
    (n.saturating_mul(2)).max(MIN_CAP).next_power_of_two()
}

/// Switches the dict to a new table holding `entries`.
fn replace_table(tx: &mut Tx<'_>, entries: &[(u64, u64)]) -> Result<(), ManagerError> {
    let cap = cap_for(entries.len() as u64);
    let t = build_table(tx, cap, entries)?;
    let old = tx.root(TABLE)?;
    tx.publish();
    tx.set_root(TABLE, t)?;
    tx.set_root(CAP, cap)?;
    tx.set_root(LEN, entries.len() as u64)?;
    tx.set_root(USED, entries.len() as u64)?;
    tx.free(old);
    Ok(())
}

/// Makes room for `extra` more keys (a new table when the load would pass
/// 3/4).
fn reserve(tx: &mut Tx<'_>, extra: u64) -> Result<(), ManagerError> {
    let s = tx.store();
    let cap = match table(s)? {
        Some((_, cap)) => cap,
        None => 0,
    };
    let used = root(s, USED)?;
    if used.saturating_add(extra).saturating_mul(4) >= cap.saturating_mul(3) {
        let entries = live(s)?;
        let cap = cap_for(entries.len() as u64 + extra);
        let t = build_table(tx, cap, &entries)?;
        let old = tx.root(TABLE)?;
        tx.publish();
        tx.set_root(TABLE, t)?;
        tx.set_root(CAP, cap)?;
        tx.set_root(USED, entries.len() as u64)?;
        tx.free(old);
    }
    Ok(())
}

/// Sets `key` to `value`; returns the old value's bytes if there was one
/// and `want_old` asks for them.
pub(crate) fn insert(
    tx: &mut Tx<'_>,
    key: &[u8],
    value: &[u8],
    hk: u64,
    want_old: bool,
) -> Result<Option<Vec<u8>>, ManagerError> {
    reserve(tx, 1)?;
    let s = tx.store();
    let (t, cap) = table(s)?.ok_or(ManagerError::corrupted("the dict's table", 0))?;
    match probe(s, t, cap, key, hk)? {
        Probe::Found(slot, old) => {
            let before = if want_old { Some(entry_value(s, old)?) } else { None };
            if overwrite(tx, old, value)? {
                return Ok(before);
            }
            let e = new_entry(tx, key, value)?;
            tx.publish();
            tx.set(slot + 8, e)?;
            tx.free(old);
            Ok(before)
        }
        Probe::Vacant(slot, empty) => {
            let e = new_entry(tx, key, value)?;
            let (n, used) = (root(s, LEN)?, root(s, USED)?);
            tx.publish();
            tx.set(slot, hk)?;
            tx.set(slot + 8, e)?;
            tx.set_root(LEN, n.saturating_add(1))?;
            if empty {
                tx.set_root(USED, used.saturating_add(1))?;
            }
            Ok(None)
        }
    }
}

/// Values of up to this many words are overwritten in place (each word
/// logged) when they fit the entry's block; longer ones get a new entry.
const IN_PLACE_WORDS: u64 = 8;

/// Overwrites entry `e`'s value with `value` in place, through the log,
/// if it fits the block and is short; false when it does not.
fn overwrite(tx: &mut Tx<'_>, e: u64, value: &[u8]) -> Result<bool, ManagerError> {
    let s = tx.store();
    let (k, _) = entry_lens(s, e)?;
    let vwords = words(value.len() as u64);
    if vwords / 8 > IN_PLACE_WORDS || 16 + words(k) + vwords > s.block_capacity(e)? {
        return Ok(false);
    }
    let base = e + 16 + words(k);
    tx.publish();
    for (i, chunk) in value.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        tx.set(base + 8 * i as u64, u64::from_le_bytes(w))?;
    }
    tx.set(e + 8, value.len() as u64)?;
    Ok(true)
}

/// The value of `key` read under the transaction's lock.
pub(crate) fn get_locked(tx: &Tx<'_>, key: &[u8], hk: u64) -> Result<Option<Vec<u8>>, ManagerError> {
    get(tx.store(), key, hk)
}

/// Removes `key`; returns its value's bytes if it was there.
pub(crate) fn remove(tx: &mut Tx<'_>, key: &[u8], hk: u64) -> Result<Option<Vec<u8>>, ManagerError> {
    let s = tx.store();
    let Some((t, cap)) = table(s)? else { return Ok(None) };
    match probe(s, t, cap, key, hk)? {
        Probe::Found(slot, e) => {
            let before = entry_value(s, e)?;
            let n = root(s, LEN)?;
            tx.publish();
            tx.set(slot + 8, TOMB)?;
            tx.set_root(LEN, n.saturating_sub(1))?;
            tx.free(e);
            Ok(Some(before))
        }
        Probe::Vacant(..) => Ok(None),
    }
}

/// Removes every key.
pub(crate) fn clear(tx: &mut Tx<'_>) -> Result<(), ManagerError> {
    let s = tx.store();
    let entries = live(s)?;
    let old = tx.root(TABLE)?;
    tx.publish();
    tx.set_root(TABLE, 0)?;
    tx.set_root(CAP, 0)?;
    tx.set_root(LEN, 0)?;
    tx.set_root(USED, 0)?;
    tx.free(old);
    for (e, _) in entries {
        tx.free(e);
    }
    Ok(())
}

/// Sets many keys at once (all or none).
pub(crate) fn update(tx: &mut Tx<'_>, items: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ManagerError> {
    if items.len() <= BULK {
        for (k, v) in items {
            insert(tx, k, v, hash(k), false)?;
        }
        return Ok(());
    }
    // Bulk: one new table with the old entries and the new ones; the old
    // entries of keys set again are freed.
    let s = tx.store();
    let mut map: std::collections::HashMap<Vec<u8>, (u64, u64)> = std::collections::HashMap::new();
    for (e, h) in live(s)? {
        map.insert(entry_key(s, e)?, (e, h));
    }
    let mut replaced = Vec::new();
    for (k, v) in items {
        let e = new_entry(tx, k, v)?;
        if let Some((old, _)) = map.insert(k.clone(), (e, hash(k))) {
            replaced.push(old);
        }
    }
    let entries: Vec<(u64, u64)> = map.into_values().collect();
    replace_table(tx, &entries)?;
    for e in replaced {
        // An entry replaced twice in `items` was fresh: freeing it is
        // still right (it is reachable from nowhere).
        tx.free(e);
    }
    Ok(())
}
