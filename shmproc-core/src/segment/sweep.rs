//! Named segments, and removing those no live process uses.
//!
//! Anonymous segments need no sweep: the kernel frees them with their last
//! user. A named object outlives every process until it is unlinked, so a
//! creator killed before it could unlink leaks it. [`sweep`] finds our
//! objects in `/dev/shm` through the [`census`](super::census) (by the
//! header's magic, read with `pread` so a foreign or short file is never
//! mapped) and unlinks each whose creator is no longer running and that no
//! running process holds or maps.

use super::{SegmentInfo, object_path};
use crate::error::SegmentError;
use crate::liveness::{self, Started};
use crate::sys;

/// A named segment found in `/dev/shm`.
#[derive(Debug, Clone)]
pub struct NamedSegment {
    /// Its name (what `Segment::open_named` takes).
    pub name: String,
    /// The validated header, or why it did not validate.
    pub info: Result<SegmentInfo, String>,
    /// The pid of the process that created it.
    pub creator_pid: u32,
    /// Whether that process is still running.
    pub creator_alive: bool,
}

/// A segment [`sweep`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptSegment {
    /// Its name.
    pub name: String,
    /// The pid of its dead creator.
    pub creator_pid: u32,
}

/// Lists the shm segments in `/dev/shm` that this user can open.
///
/// # Errors
///
/// [`SegmentError::Io`] if `/proc` cannot be read.
pub fn list_named() -> Result<Vec<NamedSegment>, SegmentError> {
    Ok(super::census(0)?
        .into_iter()
        .filter_map(|seg| {
            Some(NamedSegment {
                name: seg.name?,
                info: seg.info,
                creator_pid: seg.creator_pid,
                creator_alive: seg.creator_alive,
            })
        })
        .collect())
}

/// Removes every named shm segment that no live process uses: its creator
/// is no longer running, and no running process holds a descriptor of it or
/// maps it (see [`census`](super::census)).
///
/// A process that opens one between the census and the removal keeps its
/// mapping (a removal takes only the name away); a process creating a
/// segment is its live creator, and a segment whose header is not written
/// yet is not counted as one of ours: neither is removed.
///
/// # Errors
///
/// [`SegmentError::Io`] if `/proc` cannot be read. Objects that vanish or
/// cannot be opened meanwhile are skipped.
pub fn sweep() -> Result<Vec<SweptSegment>, SegmentError> {
    let mut swept = Vec::new();
    for seg in super::census(0)? {
        let Some(name) = seg.name else { continue };
        if seg.creator_alive || seg.holders.iter().any(|&p| liveness::is_alive(p, Started::Any)) {
            continue;
        }
        let Ok(path) = object_path(&name) else {
            continue;
        };
        if sys::shm_unlink(&path).is_ok() {
            tracing::debug!(name = %name, creator = seg.creator_pid, "swept segment of a dead creator");
            swept.push(SweptSegment {
                name,
                creator_pid: seg.creator_pid,
            });
        }
    }
    Ok(swept)
}
