//! Finding named segments, and removing those whose creator died.
//!
//! Anonymous segments need no sweep: the kernel frees them with their last
//! user. A named object outlives every process until it is unlinked, so a
//! creator killed before it could unlink leaks it. [`sweep`] finds our
//! objects in `/dev/shm` (by the header's magic, read with `pread` so a
//! foreign or short file is never mapped) and unlinks each whose creator is
//! no longer running. Processes still attached keep their mapping.

use std::os::fd::AsFd;

use zerocopy::FromBytes;

use super::header::{HEADER_LEN, MAGIC, RawHeader};
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
/// [`SegmentError::Io`] if `/dev/shm` cannot be read.
pub fn list_named() -> Result<Vec<NamedSegment>, SegmentError> {
    let mut out = Vec::new();
    for name in sys::shm_names().map_err(SegmentError::io("read /dev/shm"))? {
        if let Some(found) = inspect(&name) {
            out.push(found);
        }
    }
    Ok(out)
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

/// Reads the header of `/dev/shm/<name>` if it is one of ours.
fn inspect(name: &str) -> Option<NamedSegment> {
    let path = object_path(name).ok()?;
    let fd = sys::shm_open_existing(&path).ok()?;
    let (len, owner, _) = sys::file_info(fd.as_fd()).ok()?;
    if owner != sys::uid() {
        return None;
    }
    let mut buf = [0u8; HEADER_LEN];
    let n = sys::read_at(fd.as_fd(), &mut buf, 0).ok()?;
    if n < 8 || buf[..8] != MAGIC.to_le_bytes() {
        return None;
    }
    let raw = RawHeader::read_from_bytes(&buf).ok();
    let info = match raw {
        Some(raw) if n == HEADER_LEN => raw.validate(len, None).map_err(|e| e.to_string()),
        _ => Err(format!("header cut short: {n} of {HEADER_LEN} bytes")),
    };
    // The creator fields are written with the magic, before `state`: they
    // are meaningful even in a header whose creator died half-way.
    let (pid, start) = raw.map_or((0, 0), |r| (r.creator_pid, r.creator_start));
    Some(NamedSegment {
        name: name.to_owned(),
        info,
        creator_pid: pid,
        creator_alive: creator_alive(pid, start),
    })
}

/// Whether the process `pid` that started at `start` is still running (a
/// zombie counts as dead; start 0: unknown when it was created).
fn creator_alive(pid: u32, start: u64) -> bool {
    liveness::is_alive(pid, Started::at_or_any(start))
}
