//! The store under every container: a growable segment holding a heap of
//! blocks, changed only inside write transactions that a dead writer cannot
//! leave half done, and read without a lock.
//!
//! # Writes: an undo log under a robust lock
//!
//! A writer takes the store's [`ProcessLock`] (a dead holder is taken over
//! within a liveness slice) and, before it changes a word that was in use
//! before its transaction, appends the word's offset and old value to the
//! undo log (`tx.rs`). New contents go into blocks allocated during the
//! transaction, which nothing reachable points to until the writer switches
//! a few words to them. The commit point is one store: the log's length
//! back to 0. A writer that dies before it leaves a log that the next
//! writer, taking the lock over, plays backwards (`recover`): every changed
//! word gets its old value back, allocator heads and the heap's end
//! included, so the blocks the dead writer reserved are free again. This is
//! LMDB's guarantee (a change is all there or not at all, the lock is taken
//! over, nothing stored is lost) with an undo log instead of LMDB's
//! copy-on-write pages: a container changes a few words in place per
//! operation, and builds anything larger (a grown table, a sorted list) in
//! fresh blocks behind one word.
//!
//! # Reads: a seqlock, and a lock as the fallback
//!
//! `seq` is odd while a writer changes words that readers may reach
//! (`Tx::publish`) and is bumped again when it is done. A reader notes an
//! even `seq`, copies what it needs through atomic word loads, checks every
//! offset and length against the segment's bounds as it goes, and keeps the
//! copy only if `seq` did not move. Blocks freed by a transaction become
//! reusable only after its `seq` bump, so a reader that could still reach a
//! reused block sees `seq` move. A reader that fails too often (a writer
//! stuck or dead in the middle) reads under the lock instead, which also
//! repairs what a dead writer left.
//!
//! # Growth
//!
//! The segment is growable ([`Segment::create_growable`]): each process maps
//! up to the machine's memory at once, and the writer lengthens the file
//! when the heap needs room. A process that meets an offset past the length
//! it knows asks the kernel for the file's length again before it touches
//! the bytes, so nobody stops while a container grows and everybody sees
//! the new room.

pub(crate) mod layout;
mod tx;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::fence;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::{Segment, SegmentKind, TypeIdentity};
use shmproc_sync::ProcessLock;

pub(crate) use tx::Tx;

use self::layout::{
    BLOCK_HEADER, HEAP, HEAP_END_OFF, INITIAL_LEN, KIND_OFF, LOCK_OFF, MAGIC, MAGIC_OFF, SEQ_OFF, VERSION, VERSION_OFF,
    class_of_tag, class_size, words,
};
use crate::error::ManagerError;
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The kind of segment a store lives in.
pub(crate) const STORE_KIND: SegmentKind = SegmentKind::MANAGER_STORE;

/// Optimistic read attempts before a reader falls back to the lock.
const READ_TRIES: u32 = 64;

/// Which container a store holds (its header says, and attach checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dict = 1,
    List = 2,
    Namespace = 3,
}

/// A store: its segment, mapped, and how much of it this process knows to
/// be inside the file. Clones of a container share one.
pub(crate) struct Store {
    seg: Segment,
    /// Start of the payload.
    base: *mut u8,
    /// Payload bytes known to lie inside the file (it never shrinks).
    known: AtomicUsize,
    kind: Kind,
}

// SAFETY: the segment's bytes are reached only through atomic word accesses
// at offsets checked against the file's length (`word`), and the lock word
// through `ProcessLock`'s atomics; `base` is the segment's own mapping,
// which lives as long as the `Store`.
unsafe impl Send for Store {}
// SAFETY: as for Send: every shared access is atomic.
unsafe impl Sync for Store {}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("kind", &self.kind)
            .field("len", &self.known.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn identity(kind: Kind) -> TypeIdentity {
    let name = match kind {
        Kind::Dict => "shmproc::manager::Dict",
        Kind::List => "shmproc::manager::List",
        Kind::Namespace => "shmproc::manager::Namespace",
    };
    TypeIdentity {
        kind: STORE_KIND,
        name,
        size: 8,
        align: 8,
    }
}

impl Store {
    /// A new, empty store for a `kind` container.
    pub(crate) fn create(kind: Kind) -> Result<Arc<Self>, ManagerError> {
        let seg = Segment::create_growable(&identity(kind), INITIAL_LEN as usize)?;
        let store = Self::wrap(seg, kind);
        store.init_word(MAGIC_OFF, MAGIC);
        store.init_word(VERSION_OFF, VERSION);
        store.init_word(KIND_OFF, kind as u64);
        store.init_word(HEAP_END_OFF, HEAP);
        Ok(Arc::new(store))
    }

    /// Wraps a segment received from another process, checking all of its
    /// header.
    pub(crate) fn attach(seg: Segment, kind: Kind) -> Result<Arc<Self>, ManagerError> {
        seg.check_type(&identity(kind))?;
        if !seg.info().growable {
            return Err(ManagerError::corrupted("the segment's growable flag", 0));
        }
        let store = Self::wrap(seg, kind);
        let check = |off, want, what| match store.load(off)? {
            v if v == want => Ok(()),
            v => Err(ManagerError::corrupted(what, v)),
        };
        check(MAGIC_OFF, MAGIC, "the store's magic")?;
        check(VERSION_OFF, VERSION, "the store's layout version")?;
        check(KIND_OFF, kind as u64, "the store's kind")?;
        Ok(Arc::new(store))
    }

    fn wrap(seg: Segment, kind: Kind) -> Self {
        let known = seg.current_len().unwrap_or(0);
        Self {
            base: seg.payload().as_ptr(),
            seg,
            known: AtomicUsize::new(known),
            kind,
        }
    }

    fn init_word(&self, off: u64, v: u64) {
        if let Ok(w) = self.word(off) {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// The segment, for sending the store to another process.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Payload bytes inside the file now (asking the kernel when `need`
    /// is past what this process knew).
    fn ensure_known(&self, need: u64) -> Result<(), ManagerError> {
        let known = self.known.load(Ordering::Relaxed) as u64;
        if need <= known {
            return Ok(());
        }
        let now = self.seg.current_len()?;
        self.known.fetch_max(now, Ordering::Relaxed);
        if need <= now as u64 {
            Ok(())
        } else {
            Err(ManagerError::corrupted("an offset past the end of the segment", need))
        }
    }

    /// The word at payload offset `off`, after checking that it is aligned
    /// and inside the file.
    pub(crate) fn word(&self, off: u64) -> Result<&AtomicU64, ManagerError> {
        let end = off.checked_add(8).filter(|_| off.is_multiple_of(8));
        let Some(end) = end else {
            return Err(ManagerError::corrupted("an offset", off));
        };
        self.ensure_known(end)?;
        // SAFETY: `off..off + 8` is inside the file (checked above), which
        // is inside this process's mapping of it (`current_len` never says
        // more than is mapped).
        let ptr = unsafe { self.base.add(off as usize) };
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "8-aligned: checked above, and the payload is 128-aligned"
        )]
        let ptr = ptr.cast::<u64>();
        // SAFETY: `ptr` is 8-aligned and in bounds (above); the file never
        // shrinks (sealed), every access to the store's words is atomic of
        // this width, and the mapping lives as long as `self`, which bounds
        // the reference.
        Ok(unsafe { AtomicU64::from_ptr(ptr) })
    }

    /// The word at `off`, loaded (Relaxed: a reader's consistency comes from
    /// the `seq` checks around its reads, a writer's from the lock).
    pub(crate) fn load(&self, off: u64) -> Result<u64, ManagerError> {
        Ok(self.word(off)?.load(Ordering::Relaxed))
    }

    /// Copies `len` bytes starting at the word `off` (whole words are read;
    /// the padding of the last is dropped).
    pub(crate) fn read_bytes(&self, off: u64, len: u64) -> Result<Vec<u8>, ManagerError> {
        let end = off
            .checked_add(words(len))
            .ok_or(ManagerError::corrupted("a length", len))?;
        self.ensure_known(end)?;
        let mut out = Vec::with_capacity(words(len) as usize);
        let mut at = off;
        while at < end {
            out.extend_from_slice(&self.load(at)?.to_le_bytes());
            at += 8;
        }
        out.truncate(len as usize);
        Ok(out)
    }

    /// Whether the `len` bytes at word `off` equal `bytes`.
    pub(crate) fn bytes_eq(&self, off: u64, bytes: &[u8]) -> Result<bool, ManagerError> {
        let mut at = off;
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            if self.load(at)? != u64::from_le_bytes(w) {
                return Ok(false);
            }
            at += 8;
        }
        Ok(true)
    }

    /// The payload capacity of the block whose payload starts at `payload`,
    /// after checking its tag: what a reader checks before it trusts a
    /// length against the block.
    pub(crate) fn block_capacity(&self, payload: u64) -> Result<u64, ManagerError> {
        if payload < HEAP + BLOCK_HEADER || !payload.is_multiple_of(16) {
            return Err(ManagerError::corrupted("a block offset", payload));
        }
        let tag = self.load(payload - BLOCK_HEADER)?;
        let class = class_of_tag(tag).ok_or(ManagerError::corrupted("a block's tag", tag))?;
        Ok(class_size(class) - BLOCK_HEADER)
    }

    pub(crate) fn seq(&self) -> &AtomicU64 {
        self.word(SEQ_OFF).expect("the header lies inside the first length")
    }

    pub(crate) fn lock(&self) -> &ProcessLock {
        // SAFETY: LOCK_OFF..LOCK_OFF + 8 lies in the header page, inside the
        // file from creation on.
        let ptr = unsafe { self.base.add(LOCK_OFF as usize) };
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "LOCK_OFF is 8-aligned in a 128-aligned payload"
        )]
        let ptr = ptr.cast::<ProcessLock>();
        // SAFETY: aligned and in bounds (above); ProcessLock is two
        // AtomicU32 (any bits valid) and only its own atomics touch them.
        unsafe { &*ptr }
    }

    /// Runs `f` on a consistent state of the store: optimistically, without
    /// the lock, retried while writers publish; under the lock after
    /// [`READ_TRIES`] failed tries. `f` must only read (through `load`,
    /// `read_bytes`, ...) and must stop on any bad offset with an error:
    /// on a torn state its result is thrown away, on a consistent one it is
    /// the answer.
    pub(crate) fn read<R>(&self, mut f: impl FnMut(&Self) -> Result<R, ManagerError>) -> Result<R, ManagerError> {
        let seq = self.seq();
        for attempt in 0..READ_TRIES {
            // Acquire: pairs with the Release store that ended the last
            // publication (`Tx::finish`): what it published is visible.
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let r = f(self);
                // Acquire fence: orders the loads of `f` before the second
                // load of `seq`; pairs with the Release fence after a
                // writer makes `seq` odd (`Tx::publish`), so a load that
                // saw a published change makes this load see `seq` moved.
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    return r;
                }
            }
            if attempt > 8 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let tx = Tx::begin(self)?;
        let r = f(self);
        drop(tx);
        r
    }
}

/// A handle's wire form: the store's segment (its descriptor travels beside
/// the bytes, see `shmproc_core::handle`).
pub(crate) fn serialize<S: Serializer>(store: &Store, serializer: S) -> Result<S::Ok, S::Error> {
    store.segment().serialize(serializer)
}

/// Attaches a store received as [`serialize`] wrote it.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D, kind: Kind) -> Result<Arc<Store>, D::Error> {
    let seg = Segment::deserialize(deserializer)?;
    Store::attach(seg, kind).map_err(|e| match e {
        ManagerError::Segment(s) => shmproc_core::handle::decode_error(s),
        other => shmproc_core::handle::decode_error(shmproc_core::SegmentError::Corrupted {
            field: "store header",
            found: match other {
                ManagerError::Corrupted { found, .. } => found,
                _ => 0,
            },
        }),
    })
}

#[cfg(test)]
pub(crate) mod tests;
