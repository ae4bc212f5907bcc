//! What the command `shm` shows of a queue or a ring: its words read from a
//! private copy of its segment's payload (never the live words), as named
//! facts. A copy is a snapshot; every word is taken as found and every
//! offset checked against the copy's length.

use shmproc_core::SegmentKind;
use shmproc_core::segment::{Field, State, word_at};
use shmproc_sync::inspect::{lock_holder, owner};

/// The state of a queue, an SPSC ring or a byte ring whose payload starts
/// with `payload`; `None` for other kinds or a payload too short.
#[doc(hidden)]
pub fn describe(kind: SegmentKind, payload: &[u8]) -> Option<State> {
    match kind {
        SegmentKind::QUEUE => crate::queue::describe(payload),
        SegmentKind::RING_SPSC => crate::spsc::describe(payload),
        SegmentKind::RING_BYTES => {
            use crate::bytes::RingHeader;
            use std::mem::offset_of;
            let mut s = ring_words(payload, 0, "bytes used")?;
            let w = |at| word_at(payload, at);
            s.push(("writer", owner(w(offset_of!(RingHeader, writer))?)));
            s.push(("reader", owner(w(offset_of!(RingHeader, reader))?)));
            s.push(("closed", Field::Flag(w(offset_of!(RingHeader, closed))? != 0)));
            Some(s)
        }
        _ => None,
    }
}

/// The capacity (first word) and `tail - head` (at +128 and +256) of a ring
/// header at byte `at`, as `used` and "capacity".
pub(crate) fn ring_words(payload: &[u8], at: usize, used: &'static str) -> Option<State> {
    let w = |off: usize| word_at(payload, at + off);
    let (cap, tail, head) = (w(0)?, w(128)?, w(256)?);
    Some(vec![
        (used, Field::Count(tail.wrapping_sub(head).into())),
        ("capacity", Field::Count(cap.into())),
    ])
}

/// A lock word as its holder (for the queues' two locks).
pub(crate) fn lock(payload: &[u8], at: usize) -> Option<Field> {
    word_at(payload, at).map(lock_holder)
}
