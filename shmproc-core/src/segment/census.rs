//! Every live segment of this user, for the command `shm`: the named ones
//! in `/dev/shm`, and the anonymous ones (memfds, which the library names
//! `shm:<type>`), found through `/proc/<pid>/fd` and `/proc/<pid>/maps`;
//! which processes hold or map each; and a private copy of its header and
//! of the first bytes of its payload, read with `pread` (no mapping, no
//! reference into memory another process may write, nothing written).
//!
//! A process that ends, or an object that vanishes, while the census runs
//! is left out; a header that does not validate is reported as such, with
//! why.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use zerocopy::FromBytes;

use super::SegmentInfo;
use super::header::{HEADER_LEN, MAGIC, RawHeader};
use crate::error::SegmentError;
use crate::liveness::{self, Started};
use crate::sys;

/// What a memfd of this library is called in `/proc` (`memfd:` and the
/// name given at `memfd_create`).
const MEMFD_PREFIX: &str = "/memfd:shm:";
/// Where named segments live.
const SHM_PREFIX: &str = "/dev/shm/";

/// One live segment.
#[derive(Debug, Clone)]
pub struct LiveSegment {
    /// How `shm inspect` names it: the segment's name for a named one,
    /// `memfd:<inode>` for an anonymous one.
    pub id: String,
    /// The name, for a named segment.
    pub name: Option<String>,
    /// The memfd's name as `/proc` shows it (`shm:<type>`), or the path in
    /// `/dev/shm`.
    pub label: String,
    /// The file's length in bytes.
    pub bytes: u64,
    /// The validated header, or why it did not validate.
    pub info: Result<SegmentInfo, String>,
    /// The creator's pid, as its header says (0 when unreadable).
    pub creator_pid: u32,
    /// Whether that process still runs.
    pub creator_alive: bool,
    /// The processes that hold a descriptor of it or map it.
    pub holders: Vec<u32>,
    /// The first bytes of the payload (at most what the census was asked
    /// for), copied: a snapshot, as racy as any read of a live object.
    pub payload: Vec<u8>,
}

/// One fact of an object's state, as the command `shm` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A count or a size.
    Count(u64),
    /// Yes or no.
    Flag(bool),
    /// A process (or thread) and whether it still runs.
    Task {
        /// Its pid (or tid).
        pid: u32,
        /// Whether it runs (a zombie, or a reused pid with another start
        /// time, does not).
        alive: bool,
    },
    /// Anything else.
    Text(String),
}

/// An object's state: named facts, in the order they are best read.
pub type State = Vec<(&'static str, Field)>;

/// The native-endian `u32` at byte `at` of a private copy of a payload
/// (for the describers of the command `shm`).
#[doc(hidden)]
pub fn word_at(payload: &[u8], at: usize) -> Option<u32> {
    let b = payload.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

/// The native-endian `u64` at byte `at` of a private copy of a payload.
#[doc(hidden)]
pub fn word64_at(payload: &[u8], at: usize) -> Option<u64> {
    let b = payload.get(at..at.checked_add(8)?)?;
    Some(u64::from_ne_bytes(b.try_into().ok()?))
}

/// Where a segment was seen, before it is read.
#[derive(Default)]
struct Seen {
    label: String,
    name: Option<String>,
    /// Paths that open it (`/proc/<pid>/fd/<n>`, `/proc/<pid>/map_files/..`,
    /// `/dev/shm/<name>`), tried in order.
    paths: Vec<String>,
    holders: Vec<u32>,
}

/// Every live segment of this user, with up to `payload` bytes of each
/// one's payload.
///
/// # Errors
///
/// [`SegmentError::Io`] if `/proc` cannot be read.
pub fn census(payload: usize) -> Result<Vec<LiveSegment>, SegmentError> {
    let uid = sys::uid();
    // Keyed by (named?, inode): memfds and /dev/shm are two file systems.
    let mut seen: BTreeMap<(bool, u64), Seen> = BTreeMap::new();
    let procs = std::fs::read_dir("/proc").map_err(SegmentError::io("read /proc"))?;
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if entry.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        scan_fds(pid, &mut seen);
        scan_maps(pid, &mut seen);
    }
    if let Ok(names) = sys::shm_names() {
        for name in names {
            let path = format!("{SHM_PREFIX}{name}");
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.uid() != uid {
                continue;
            }
            let s = seen.entry((true, meta.ino())).or_default();
            s.label.clone_from(&path);
            s.name = Some(name);
            s.paths.push(path);
        }
    }
    let mut out = Vec::new();
    for ((named, ino), s) in seen {
        if let Some(found) = read(named, ino, s, payload) {
            out.push(found);
        }
    }
    Ok(out)
}

/// The live segment `id` (a name, or `memfd:<inode>`), if it is there.
///
/// # Errors
///
/// As [`census`].
pub fn find(id: &str, payload: usize) -> Result<Option<LiveSegment>, SegmentError> {
    Ok(census(payload)?.into_iter().find(|s| s.id == id))
}

/// The descriptors of `pid` that are our memfds or named segments.
fn scan_fds(pid: u32, seen: &mut BTreeMap<(bool, u64), Seen>) {
    let dir = format!("/proc/{pid}/fd");
    let Ok(fds) = std::fs::read_dir(&dir) else { return };
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let Some(target) = target.to_str() else { continue };
        let Some(named) = named_or_memfd(target) else { continue };
        // The file the link names (its inode), not the link.
        let Ok(meta) = std::fs::metadata(fd.path()) else {
            continue;
        };
        note(
            seen,
            (named, meta.ino()),
            target,
            fd.path().to_string_lossy().into_owned(),
            pid,
        );
    }
}

/// The mappings of `pid` of our memfds or named segments (a mapping
/// outlives the descriptor it was made from).
fn scan_maps(pid: u32, seen: &mut BTreeMap<(bool, u64), Seen>) {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return;
    };
    for line in maps.lines() {
        // address perms offset dev inode path
        let mut fields = line.split_whitespace();
        let (Some(range), Some(_), Some(_), Some(_), Some(ino)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let path = fields.collect::<Vec<_>>().join(" ");
        let Some(named) = named_or_memfd(&path) else { continue };
        let Ok(ino) = ino.parse::<u64>() else { continue };
        // Tried after the descriptors (see `read`).
        note(seen, (named, ino), &path, format!("/proc/{pid}/map_files/{range}"), pid);
    }
}

/// Whether a link's text or a mapping's path names one of our memfds
/// (`Some(false)`), a segment in `/dev/shm` (`Some(true)`), or neither.
fn named_or_memfd(path: &str) -> Option<bool> {
    if path.starts_with(MEMFD_PREFIX) {
        Some(false)
    } else if path.starts_with(SHM_PREFIX) {
        Some(true)
    } else {
        None
    }
}

/// Records that `pid` holds or maps the segment `key`, which `open` opens.
fn note(seen: &mut BTreeMap<(bool, u64), Seen>, key: (bool, u64), path: &str, open: String, pid: u32) {
    let s = seen.entry(key).or_default();
    if s.label.is_empty() {
        s.label = label_of(path);
    }
    s.paths.push(open);
    s.holders.push(pid);
}

/// A link's text without `/memfd:` and ` (deleted)`.
fn label_of(target: &str) -> String {
    let t = target.strip_suffix(" (deleted)").unwrap_or(target);
    t.strip_prefix("/memfd:").unwrap_or(t).to_owned()
}

/// Reads what `s` points at; `None` when it is not one of ours (no magic)
/// or vanished.
fn read(named: bool, inode: u64, mut s: Seen, want: usize) -> Option<LiveSegment> {
    s.holders.sort_unstable();
    s.holders.dedup();
    // Descriptors and names first: opening a mapping's file
    // (`map_files`) needs CAP_SYS_ADMIN.
    s.paths.sort_by_key(|p| p.contains("/map_files/"));
    let id = match &s.name {
        Some(name) if named => name.clone(),
        // A named segment whose name is gone (unlinked, still mapped).
        _ if named => format!("unlinked:{inode}"),
        _ => format!("memfd:{inode}"),
    };
    let Some(file) = s.paths.iter().find_map(|p| File::open(p).ok()) else {
        // Seen, but no path opens it (a mapping only, without the right
        // to open it): listed with what is known.
        return Some(LiveSegment {
            id,
            name: s.name,
            label: s.label,
            bytes: 0,
            info: Err("mapped only, and its file cannot be opened from here".into()),
            creator_pid: 0,
            creator_alive: false,
            holders: s.holders,
            payload: Vec::new(),
        });
    };
    let (len, _, _) = sys::file_info(file.as_fd()).ok()?;
    let mut buf = [0u8; HEADER_LEN];
    let n = sys::read_at(file.as_fd(), &mut buf, 0).ok()?;
    if n < 8 || buf[..8] != MAGIC.to_le_bytes() {
        // Not ours (or its creator died before writing the magic): a memfd
        // of ours is named so, a named segment may be anyone's.
        if named {
            return None;
        }
    }
    let raw = RawHeader::read_from_bytes(&buf).ok();
    let info = match raw {
        Some(raw) if n == HEADER_LEN => raw.validate(len, None).map_err(|e| e.to_string()),
        _ => Err(format!("header cut short: {n} of {HEADER_LEN} bytes")),
    };
    let (creator_pid, start) = raw.map_or((0, 0), |r| (r.creator_pid, r.creator_start));
    let mut bytes = Vec::new();
    if let Ok(i) = &info {
        let want = usize::try_from(i.payload_len).unwrap_or(usize::MAX).min(want);
        bytes.resize(want, 0);
        let got = sys::read_at(file.as_fd(), &mut bytes, HEADER_LEN as u64).unwrap_or(0);
        bytes.truncate(got);
    }
    Some(LiveSegment {
        id,
        name: s.name,
        label: s.label,
        bytes: len,
        info,
        creator_pid,
        creator_alive: liveness::is_alive(creator_pid, Started::at_or_any(start)),
        holders: s.holders,
        payload: bytes,
    })
}
