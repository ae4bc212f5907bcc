//! What the command `shm` shows of a synchronisation object: its words read
//! from a private copy of its segment's payload (never the live words), as
//! named facts. A copy is a snapshot, as racy as any look at a live object;
//! every word is taken as found (a scribbled one shows as what it says).

use shmproc_core::SegmentKind;
use shmproc_core::segment::{Field, State, word_at};

use crate::lock::{OWNER, POISONED, WAITERS};
use crate::park::{owner_alive, task_of};

/// The state of a lock, rlock, semaphore, event, condition or barrier
/// whose payload starts with `payload`; `None` for other kinds or a payload
/// too short to hold the words.
#[doc(hidden)]
pub fn describe(kind: SegmentKind, payload: &[u8]) -> Option<State> {
    let w = |i: usize| word_at(payload, 4 * i);
    let mut s = State::new();
    match kind {
        SegmentKind::LOCK | SegmentKind::RLOCK => {
            let (state, inconsistent) = (w(0)?, w(1)?);
            s.push(("holder", holder(state & OWNER)));
            s.push(("waiters", Field::Flag(state & WAITERS != 0)));
            if kind == SegmentKind::RLOCK {
                s.push(("depth", Field::Count(w(2)?.into())));
            }
            if inconsistent != 0 {
                // The recorded holder that died (an owner id); a poisoned
                // lock shows it as its holder's text too.
                let pid = task_of(inconsistent);
                s.push(("owner died", Field::Task { pid, alive: false }));
            }
        }
        SegmentKind::SEMAPHORE => {
            let (value, sleepers, bound) = (w(0)?, w(1)?, w(2)?);
            s.push(("value", Field::Count(value.into())));
            s.push(("waiters", Field::Count(sleepers.into())));
            if bound != 0 {
                s.push(("bound", Field::Count(bound.into())));
            }
        }
        SegmentKind::EVENT => {
            let word = w(0)?;
            s.push(("set", Field::Flag(word & crate::event::SET != 0)));
            s.push(("waiters", Field::Flag(word & crate::event::WAITERS != 0)));
        }
        SegmentKind::CONDITION => {
            let (head, tail) = (w(0)?, w(1)?);
            s.push(("waiters", Field::Count(tail.wrapping_sub(head).into())));
        }
        SegmentKind::BARRIER => {
            let (word, parties) = (w(0)?, w(1)?);
            s.push(("parties", Field::Count(parties.into())));
            s.push(("waiting", Field::Count((word & crate::barrier::COUNT).into())));
            s.push(("broken", Field::Flag(word & crate::barrier::BROKEN != 0)));
        }
        _ => return None,
    }
    Some(s)
}

/// The holder named by a lock's state word (a `Lock`'s, or the
/// `ProcessLock` a queue embeds).
#[doc(hidden)]
pub fn lock_holder(state: u32) -> Field {
    holder(state & OWNER)
}

/// A ring end's or a queue user's owner id as a task: none (0), or the
/// task and whether it runs.
#[doc(hidden)]
pub fn owner(id: u32) -> Field {
    if id == 0 {
        Field::Text("none".into())
    } else {
        Field::Task {
            pid: task_of(id),
            alive: owner_alive(id),
        }
    }
}

/// A lock word's owner field as a holder: none, or the task and whether
/// it runs.
fn holder(owner: u32) -> Field {
    match owner {
        0 => Field::Text("none".into()),
        POISONED => Field::Text("none (released after its holder died; inconsistent)".into()),
        id => Field::Task {
            pid: task_of(id),
            alive: owner_alive(id),
        },
    }
}
