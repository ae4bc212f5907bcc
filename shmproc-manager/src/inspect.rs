//! What the command `shm` shows of a manager's objects: a container's
//! kind, length and lock, a served-objects hub's manager process, read from
//! a private copy of the segment's payload (never the live words). A copy
//! is a snapshot; a container being written shows the count of a moment.

use shmproc_core::SegmentKind;
use shmproc_core::segment::{Field, State, word_at, word64_at};
use shmproc_sync::inspect::{lock_holder, owner};

use crate::store::layout::{HEAP_END_OFF, KIND_OFF, LOCK_OFF, ROOT_OFF};

/// The state of a dict, list or namespace store, or of a hub; `None` for
/// other kinds or a payload too short.
#[doc(hidden)]
pub fn describe(kind: SegmentKind, payload: &[u8]) -> Option<State> {
    let w64 = |off: u64| word64_at(payload, usize::try_from(off).ok()?);
    if kind == crate::store::STORE_KIND {
        let (container, len) = match w64(KIND_OFF)? {
            // Dicts and lists keep their length in the second root word.
            1 => ("dict", w64(ROOT_OFF + 8)),
            2 => ("list", w64(ROOT_OFF + 8)),
            3 => ("namespace", None),
            other => return Some(vec![("container", Field::Text(format!("unknown kind {other}")))]),
        };
        let mut s = vec![("container", Field::Text(container.into()))];
        if let Some(len) = len {
            s.push(("entries", Field::Count(len)));
        }
        s.push(("bytes used", Field::Count(w64(HEAP_END_OFF)?)));
        s.push((
            "writer",
            lock_holder(word_at(payload, usize::try_from(LOCK_OFF).ok()?)?),
        ));
        return Some(s);
    }
    if kind == crate::served::hub::HUB_KIND {
        return Some(vec![("manager process", owner(word_at(payload, 8)?))]);
    }
    None
}
