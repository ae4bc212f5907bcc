//! Write transactions: the undo log, the allocator, and recovery after a
//! writer that died.
//!
//! A transaction runs in two phases.
//!
//! 1. *Prepare*: allocate blocks and fill them ([`Tx::alloc`],
//!    [`Tx::write_fresh`]). Nothing a reader can reach changes: the blocks
//!    were free (reachable by nobody since the `seq` bump of the
//!    transaction that freed them) or past the heap's end; the allocator's
//!    words, which readers never read, change through the log.
//! 2. *Publish* ([`Tx::publish`] makes `seq` odd): change reachable words
//!    through the log ([`Tx::set`]), free the blocks they no longer reach
//!    ([`Tx::free`]).
//!
//! [`Tx::commit`] links the freed blocks into the free lists (through the
//! log), clears the log (the commit point), makes `seq` even and unlocks.
//! Dropping a transaction that did not commit (an error on the way) plays
//! its log backwards, exactly as the next writer would after a crash.

use std::collections::HashSet;
use std::sync::atomic::fence;
use std::time::Duration;

use shmproc_core::sys::Deadline;

use super::Store;
use super::layout::{
    BLOCK_HEADER, CLASSES, HEADS_OFF, HEAP, HEAP_END_OFF, LOG_CAP, LOG_LEN_OFF, LOG_OFF, ROOT_OFF, class_for,
    class_of_tag, class_size, tag, words,
};
use crate::error::ManagerError;
use crate::sync::atomic::Ordering;

/// How long a writer waits for the lock before it checks whether the
/// holder died.
const TAKEOVER_CHECK: Duration = Duration::from_micros(200);

/// A write transaction: holds the store's lock from [`Tx::begin`] to its
/// commit or drop.
pub(crate) struct Tx<'a> {
    store: &'a Store,
    /// Words already in the log (their first old value is the one to restore).
    /// Words already in the log, blocks allocated, blocks to free: kept
    /// between transactions of a thread, so a change allocates nothing.
    scratch: Box<Scratch>,
    log_len: u64,
    /// `seq` when the transaction began (even).
    seq: u64,
    published: bool,
    done: bool,
}

impl<'a> Tx<'a> {
    /// Takes the store's lock (waiting as long as its holder lives) and
    /// repairs what a writer that died left.
    pub(crate) fn begin(store: &'a Store) -> Result<Self, ManagerError> {
        let lock = store.lock();
        let died = if lock.try_lock() || spin_for(lock) {
            false
        } else {
            // A short wait first; then, before a long one, one look at
            // whether the holder still lives (a writer killed while it held
            // the lock is taken over now, not a liveness slice later).
            match lock.lock_until(Some(Deadline::after(TAKEOVER_CHECK))) {
                Some(died) => died,
                None if lock.take_if_holder_dead() => true,
                None => lock.lock_until(None).unwrap_or(false),
            }
        };
        let mut tx = Self {
            store,
            scratch: Scratch::take(),
            log_len: 0,
            seq: 0,
            published: false,
            done: false,
        };
        if let Err(e) = tx.recover(died) {
            tx.done = true;
            lock.unlock();
            return Err(e);
        }
        Ok(tx)
    }

    /// Plays back a log left by a writer that died, and makes `seq` even.
    fn recover(&mut self, died: bool) -> Result<(), ManagerError> {
        let s = self.store;
        let len = s.load(LOG_LEN_OFF)?;
        if len > LOG_CAP {
            return Err(ManagerError::corrupted("the undo log's length", len));
        }
        if died || len > 0 {
            tracing::debug!(records = len, "a writer died inside a change; rolling it back");
        }
        // Undo in reverse: the first record of a word holds its value
        // before the transaction.
        for i in (0..len).rev() {
            let off = s.load(LOG_OFF + 16 * i)?;
            let old = s.load(LOG_OFF + 16 * i + 8)?;
            check_logged_offset(off)?;
            s.word(off)?.store(old, Ordering::Relaxed);
        }
        // Release: the restored words are in place before the log says
        // there is nothing left to undo.
        s.word(LOG_LEN_OFF)?.store(0, Ordering::Release);
        let seq = s.seq();
        let now = seq.load(Ordering::Relaxed);
        if now & 1 == 1 {
            // Release: pairs with readers' Acquire of `seq`; the restored
            // words are published with it.
            seq.store(now.wrapping_add(1), Ordering::Release);
        }
        self.seq = seq.load(Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn store(&self) -> &'a Store {
        self.store
    }

    /// Changes the word at `off` to `v`, logging its old value first (once
    /// per transaction).
    pub(crate) fn set(&mut self, off: u64, v: u64) -> Result<(), ManagerError> {
        #[cfg(test)]
        self.maybe_die();
        let word = self.store.word(off)?;
        if self.scratch.logged.insert(off) {
            check_logged_offset(off)?;
            if self.log_len == LOG_CAP {
                self.scratch.logged.remove(off);
                return Err(ManagerError::LogFull { cap: LOG_CAP });
            }
            let rec = LOG_OFF + 16 * self.log_len;
            self.store.word(rec)?.store(off, Ordering::Relaxed);
            self.store
                .word(rec + 8)?
                .store(word.load(Ordering::Relaxed), Ordering::Relaxed);
            self.log_len += 1;
            // Release: the record is complete before the length covers it
            // (for a recovering writer, which reads under the lock).
            self.store.word(LOG_LEN_OFF)?.store(self.log_len, Ordering::Release);
        }
        word.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Makes `seq` odd: from here on, readers that overlap retry.
    pub(crate) fn publish(&mut self) {
        if !self.published {
            self.published = true;
            self.store.seq().store(self.seq | 1, Ordering::Relaxed);
            // Release fence: the odd `seq` is ordered before every store
            // that follows; pairs with readers' Acquire fence before their
            // second load of `seq`.
            fence(Ordering::Release);
        }
    }

    /// Writes into a block allocated by this transaction (not logged:
    /// the block is free again if the transaction rolls back).
    pub(crate) fn write_fresh(&self, off: u64, v: u64) -> Result<(), ManagerError> {
        self.store.word(off)?.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `bytes` as whole words at `off` in a fresh block.
    pub(crate) fn write_fresh_bytes(&self, off: u64, bytes: &[u8]) -> Result<(), ManagerError> {
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_fresh(off + 8 * i as u64, u64::from_le_bytes(w))?;
        }
        Ok(())
    }

    /// A block whose payload holds at least `len` bytes; returns the
    /// payload's offset.
    pub(crate) fn alloc(&mut self, len: u64, what: &'static str) -> Result<u64, ManagerError> {
        let class = class_for(words(len)).ok_or(ManagerError::TooLarge {
            what,
            len,
            max: class_size(CLASSES - 1) - BLOCK_HEADER,
        })?;
        let head_off = HEADS_OFF + 8 * class;
        let head = self.store.load(head_off)?;
        if head != 0 {
            match self.check_free(head, class) {
                Ok(next) => {
                    self.set(head_off, next)?;
                    let payload = head + BLOCK_HEADER;
                    self.scratch.fresh.insert(payload);
                    return Ok(payload);
                }
                Err(e) => {
                    // A scribbled free list: drop it (its blocks leak) and
                    // carry on from the heap's end.
                    tracing::warn!(error = %e, class, "dropping a corrupted free list");
                    self.set(head_off, 0)?;
                }
            }
        }
        let end = self.store.load(HEAP_END_OFF)?;
        if end < HEAP || !end.is_multiple_of(16) {
            return Err(ManagerError::corrupted("the heap's end", end));
        }
        let size = class_size(class);
        let new_end = end
            .checked_add(size)
            .ok_or(ManagerError::corrupted("the heap's end", end))?;
        self.room_for(new_end)?;
        self.set(HEAP_END_OFF, new_end)?;
        self.write_fresh(end, tag(class))?;
        self.write_fresh(end + 8, 0)?;
        let payload = end + BLOCK_HEADER;
        self.scratch.fresh.insert(payload);
        Ok(payload)
    }

    /// The link of free block `block` of class `class`, after checking it.
    fn check_free(&self, block: u64, class: u64) -> Result<u64, ManagerError> {
        let end = self.store.load(HEAP_END_OFF)?;
        if block < HEAP || !block.is_multiple_of(16) || block >= end {
            return Err(ManagerError::corrupted("a free block's offset", block));
        }
        let t = self.store.load(block)?;
        if class_of_tag(t) != Some(class) {
            return Err(ManagerError::corrupted("a free block's tag", t));
        }
        let next = self.store.load(block + 8)?;
        Ok(next)
    }

    /// Grows the file so that the heap can reach `end`: at least doubling,
    /// so growth costs amortised constant time per byte.
    fn room_for(&self, end: u64) -> Result<(), ManagerError> {
        if self.store.ensure_known(end).is_ok() {
            return Ok(());
        }
        let now = self.store.seg.current_len()? as u64;
        let want = end.max(now.saturating_mul(2));
        self.store.seg.grow_to(usize::try_from(want).unwrap_or(usize::MAX))?;
        self.store.ensure_known(end)
    }

    /// Frees the block whose payload is at `payload` when the transaction
    /// commits. A block whose tag is not one (a scribbled offset) is left
    /// alone: leaking it loses nothing.
    pub(crate) fn free(&mut self, payload: u64) {
        // Duplicates are dropped at commit.
        if payload != 0 {
            self.scratch.frees.push(payload);
        }
    }

    /// The container's root word `i`.
    pub(crate) fn root(&self, i: u64) -> Result<u64, ManagerError> {
        self.store.load(ROOT_OFF + 8 * i)
    }

    /// Sets root word `i` (logged).
    pub(crate) fn set_root(&mut self, i: u64, v: u64) -> Result<(), ManagerError> {
        self.set(ROOT_OFF + 8 * i, v)
    }

    /// Makes the transaction's changes permanent and releases the lock.
    pub(crate) fn commit(mut self) -> Result<(), ManagerError> {
        self.link_frees()?;
        self.finish();
        Ok(())
    }

    /// Links the blocks to free into their classes' lists.
    fn link_frees(&mut self) -> Result<(), ManagerError> {
        if self.scratch.frees.is_empty() {
            return Ok(());
        }
        // Freed blocks become reusable after this transaction's `seq` bump.
        self.publish();
        let mut frees = std::mem::take(&mut self.scratch.frees);
        frees.sort_unstable();
        frees.dedup();
        let end = self.store.load(HEAP_END_OFF)?;
        // (class, block) of every block to free, grouped by class below.
        let mut blocks = std::mem::take(&mut self.scratch.pairs);
        blocks.clear();
        for &payload in &frees {
            let block = payload.wrapping_sub(BLOCK_HEADER);
            let ok = payload >= HEAP + BLOCK_HEADER && payload.is_multiple_of(16) && payload < end;
            let class = if ok {
                self.store.load(block).ok().and_then(class_of_tag)
            } else {
                None
            };
            match class {
                Some(c) if block + class_size(c) <= end => blocks.push((c, block)),
                _ => tracing::warn!(payload, "not freeing a block whose header is corrupted"),
            }
        }
        blocks.sort_unstable();
        for group in blocks.chunk_by(|x, y| x.0 == y.0) {
            let (class, first) = group[0];
            let head_off = HEADS_OFF + 8 * class;
            let old_head = self.store.load(head_off)?;
            for (i, &(_, block)) in group.iter().enumerate() {
                let next = group.get(i + 1).map_or(old_head, |&(_, b)| b);
                // A block that was live before this transaction: readers
                // never read its link word, and after a rollback it is live
                // again with a link nobody follows. A block this
                // transaction took off a free list: its link matters if the
                // transaction rolls back, so it is logged.
                if self.scratch.fresh.contains(block + BLOCK_HEADER) {
                    self.set(block + 8, next)?;
                } else {
                    self.write_fresh(block + 8, next)?;
                }
            }
            self.set(head_off, first)?;
        }
        frees.clear();
        self.scratch.frees = frees;
        self.scratch.pairs = blocks;
        Ok(())
    }

    /// Clears the log (the commit point), ends the publication, unlocks.
    fn finish(&mut self) {
        let s = self.store;
        if let Ok(w) = s.word(LOG_LEN_OFF) {
            // Release: every change is in place before the log stops
            // covering it.
            w.store(0, Ordering::Release);
        }
        if self.published {
            // Release: pairs with readers' Acquire load of `seq`.
            s.seq().store(self.seq.wrapping_add(2), Ordering::Release);
        }
        self.done = true;
        s.lock().unlock();
    }

    /// Plays this transaction's log backwards, then ends it.
    fn rollback(&mut self) {
        let s = self.store;
        for i in (0..self.log_len).rev() {
            let rec = LOG_OFF + 16 * i;
            if let (Ok(off), Ok(old)) = (s.load(rec), s.load(rec + 8))
                && let Ok(w) = s.word(off)
            {
                w.store(old, Ordering::Relaxed);
            }
        }
        self.finish();
    }
}

#[cfg(test)]
thread_local! {
    /// Test hook: logged writes left before the transaction "dies".
    pub(crate) static DIE_AFTER: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The panic payload of a simulated death.
#[cfg(test)]
pub(crate) struct Died;

#[cfg(test)]
impl Tx<'_> {
    /// Dies here (as SIGKILL would: no rollback, the log left in place, the
    /// lock freed as a taker-over would) once the budget runs out.
    fn maybe_die(&mut self) {
        let left = DIE_AFTER.with(std::cell::Cell::get);
        match left {
            Some(0) => {
                DIE_AFTER.with(|d| d.set(None));
                self.done = true;
                self.store.lock().unlock();
                std::panic::resume_unwind(Box::new(Died));
            }
            Some(n) => DIE_AFTER.with(|d| d.set(Some(n - 1))),
            None => {}
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.rollback();
        }
        std::mem::take(&mut self.scratch).give_back();
    }
}

/// A transaction's working sets, reused by the next transaction of the
/// same thread.
#[derive(Default)]
struct Scratch {
    logged: OffsetSet,
    /// Blocks (payload offsets) allocated by this transaction.
    fresh: OffsetSet,
    /// Blocks to free at commit.
    frees: Vec<u64>,
    /// (class, block) pairs while freeing.
    pairs: Vec<(u64, u64)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

impl Scratch {
    fn take() -> Box<Self> {
        SCRATCH.with(std::cell::Cell::take).unwrap_or_default()
    }

    /// Clears it (dropping anything large) and keeps it for the next
    /// transaction of this thread.
    fn give_back(mut self: Box<Self>) {
        self.logged.clear();
        self.fresh.clear();
        self.frees.clear();
        self.pairs.clear();
        if self.frees.capacity() > 4096 {
            self.frees = Vec::new();
        }
        if self.pairs.capacity() > 4096 {
            self.pairs = Vec::new();
        }
        SCRATCH.with(|s| s.set(Some(self)));
    }
}

/// Spins (looking before each compare-and-swap) while the lock is held,
/// up to a few microseconds: a change holds the lock for a fraction of
/// that, and a waiter that sleeps makes every later unlock pay a futex
/// wake. True when it took the lock.
fn spin_for(lock: &shmproc_sync::ProcessLock) -> bool {
    for i in 0..SPIN_TRIES {
        if lock.holder().is_none() && lock.try_lock() {
            return true;
        }
        if i < SPIN_TRIES {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    false
}

/// Looks at a held lock before a writer sleeps on it.
const SPIN_TRIES: u32 = 5000;

/// A set of offsets: a short list while it is short (most transactions
/// touch a handful of words), a hash set past that.
#[derive(Default)]
struct OffsetSet {
    small: Vec<u64>,
    big: Option<HashSet<u64>>,
}

impl OffsetSet {
    const SMALL: usize = 32;

    /// Adds `off`; true when it was not there.
    fn insert(&mut self, off: u64) -> bool {
        if let Some(big) = &mut self.big {
            return big.insert(off);
        }
        if self.small.contains(&off) {
            return false;
        }
        if self.small.len() == Self::SMALL {
            let mut big: HashSet<u64> = self.small.drain(..).collect();
            big.insert(off);
            self.big = Some(big);
        } else {
            self.small.push(off);
        }
        true
    }

    fn contains(&self, off: u64) -> bool {
        match &self.big {
            Some(big) => big.contains(&off),
            None => self.small.contains(&off),
        }
    }

    fn clear(&mut self) {
        self.small.clear();
        self.big = None;
    }

    fn remove(&mut self, off: u64) {
        match &mut self.big {
            Some(big) => {
                big.remove(&off);
            }
            None => self.small.retain(|&o| o != off),
        }
    }
}

/// A logged word must be one the transactions change: the heap's end, a
/// root word, a free-list head, or a word of the heap. Anything else in a
/// log was scribbled, and restoring it could break the lock or the log.
fn check_logged_offset(off: u64) -> Result<(), ManagerError> {
    let ok = off.is_multiple_of(8)
        && (off == HEAP_END_OFF || (ROOT_OFF..HEADS_OFF + 8 * CLASSES).contains(&off) || off >= HEAP);
    if ok {
        Ok(())
    } else {
        Err(ManagerError::corrupted("an undo record's offset", off))
    }
}
