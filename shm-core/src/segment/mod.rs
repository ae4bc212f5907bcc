//! Shared segments: create, attach, validate, unlink.
//!
//! A segment is a mapping of either
//!
//! - an anonymous `memfd` (the default): invisible to other users, sealed
//!   against resizing so no peer can shrink it under a reader (which would
//!   raise `SIGBUS`), and freed by the kernel with its last descriptor and
//!   mapping; or
//! - a named POSIX shared-memory object (`/dev/shm/<name>`), only when the
//!   user names it: created `O_EXCL` with mode 0600, attachable by name from an
//!   unrelated process, removed with [`Segment::unlink`] or, once its creator
//!   has died, by [`sweep`].
//!
//! Every segment starts with a header (layout in `segment/header.rs`,
//! summarised by [`SegmentInfo`]) that attach checks
//! in full before handing out a pointer.
//!
//! Named objects cannot be sealed: a process of the same user that truncates
//! one makes later accesses fault. Use anonymous segments where peers are not
//! trusted.

mod header;
mod mapped;
mod object;
mod sweep;

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

pub use header::{HEADER_LEN, LAYOUT_VERSION, MAGIC, MAX_ALIGN, SegmentInfo, SegmentKind, TypeIdentity};
pub(crate) use header::{RawHeader, STATE_READY};
// Hidden: used by the sibling crates shm-sync/shm-collections, not API.
#[doc(hidden)]
pub use mapped::Mapped;
pub use object::SegmentObject;
pub use sweep::{NamedSegment, SweptSegment, list_named, sweep};

use crate::error::SegmentError;
#[allow(clippy::disallowed_types, reason = "the header's state word is shared memory")]
use crate::sync::shared::{AtomicU32, Ordering::Acquire, Ordering::Release};
use crate::sys;

/// Longest name accepted for a named segment.
pub const MAX_NAME_LEN: usize = 200;

/// A mapped shared segment. Dropping it unmaps it; the memory lives on while
/// another process maps it.
pub struct Segment {
    base: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    name: Option<String>,
    info: SegmentInfo,
}

// SAFETY: a `Segment` owns its mapping and descriptor; nothing in it is tied
// to a thread. Access to the bytes goes through raw pointers whose users
// (values, arrays, locks) state their own synchronisation.
unsafe impl Send for Segment {}
// SAFETY: `&Segment` only hands out the base pointer and immutable metadata.
unsafe impl Sync for Segment {}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.len)
            .field("kind", &self.info.kind)
            .field("type", &self.info.type_name)
            .finish_non_exhaustive()
    }
}

impl Segment {
    /// Creates an anonymous segment holding `payload_len` bytes of `id`'s type.
    ///
    /// The payload is zero-filled.
    ///
    /// # Errors
    ///
    /// [`SegmentError::InvalidSize`] for a zero or absurd length,
    /// [`SegmentError::Io`] when the kernel refuses.
    pub fn create(id: &TypeIdentity, payload_len: usize) -> Result<Self, SegmentError> {
        let total = checked_total(id, payload_len)?;
        let cname = CString::new(format!("shm:{}", short_name(id.name))).unwrap_or_default();
        let fd = sys::memfd(&cname).map_err(SegmentError::io("memfd_create"))?;
        sys::set_len(fd.as_fd(), total as u64).map_err(SegmentError::io("ftruncate"))?;
        sys::seal_size(fd.as_fd()).map_err(SegmentError::io("seal"))?;
        Self::init(fd, total, None, id)
    }

    /// Creates a named segment that other processes can open by `name`.
    ///
    /// `name` is 1 to 200 characters from `[A-Za-z0-9._-]`, not starting with
    /// a dot. The object is created exclusively with mode 0600.
    ///
    /// # Errors
    ///
    /// [`SegmentError::InvalidName`], [`SegmentError::AlreadyExists`],
    /// [`SegmentError::InvalidSize`], [`SegmentError::Io`].
    pub fn create_named(name: &str, id: &TypeIdentity, payload_len: usize) -> Result<Self, SegmentError> {
        let path = object_path(name)?;
        let total = checked_total(id, payload_len)?;
        let fd = sys::shm_create_exclusive(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SegmentError::AlreadyExists { name: name.to_owned() },
            _ => SegmentError::Io {
                op: "shm_open",
                source: e,
            },
        })?;
        let made = sys::set_len(fd.as_fd(), total as u64)
            .map_err(SegmentError::io("ftruncate"))
            .and_then(|()| Self::init(fd, total, Some(name.to_owned()), id));
        if made.is_err() {
            // Leave nothing behind for a segment nobody will ever see ready.
            let _ = sys::shm_unlink(&path);
        }
        made
    }

    /// Opens the named segment `name`, checking that it holds `expect`'s type
    /// (any type when `None`).
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotFound`], and every validation error of [`Segment::from_fd`].
    pub fn open_named(name: &str, expect: Option<&TypeIdentity>) -> Result<Self, SegmentError> {
        let path = object_path(name)?;
        let fd = sys::shm_open_existing(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SegmentError::NotFound { name: name.to_owned() },
            _ => SegmentError::Io {
                op: "shm_open",
                source: e,
            },
        })?;
        Self::attach(fd, Some(name.to_owned()), expect)
    }

    /// Attaches the segment behind `fd` (received from another process),
    /// checking its header and, if given, its type.
    ///
    /// # Errors
    ///
    /// [`SegmentError::TooShort`], [`SegmentError::BadMagic`],
    /// [`SegmentError::VersionMismatch`], [`SegmentError::NotInitialized`],
    /// [`SegmentError::LengthMismatch`], [`SegmentError::Corrupted`],
    /// [`SegmentError::TypeMismatch`], [`SegmentError::Io`].
    pub fn from_fd(fd: OwnedFd, expect: Option<&TypeIdentity>) -> Result<Self, SegmentError> {
        Self::attach(fd, None, expect)
    }

    /// Removes the name of a named segment. Processes that have it mapped
    /// keep using it; the memory goes with the last of them.
    ///
    /// # Errors
    ///
    /// [`SegmentError::InvalidName`], [`SegmentError::NotFound`], [`SegmentError::Io`].
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        let path = object_path(name)?;
        sys::shm_unlink(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SegmentError::NotFound { name: name.to_owned() },
            _ => SegmentError::Io {
                op: "shm_unlink",
                source: e,
            },
        })
    }

    /// The name, for a named segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the header says.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// Start of the payload, aligned to [`MAX_ALIGN`].
    pub fn payload(&self) -> NonNull<u8> {
        // SAFETY: len >= HEADER_LEN (checked at create and attach), so the
        // result is inside the mapping or one past its end.
        unsafe { self.base.add(HEADER_LEN) }
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.len - HEADER_LEN
    }

    /// Records the name a received segment was created with.
    pub(crate) fn set_name(&mut self, name: Option<String>) {
        self.name = name;
    }

    /// Checks that this segment holds `id`'s type.
    ///
    /// # Errors
    ///
    /// [`SegmentError::TypeMismatch`].
    pub fn check_type(&self, id: &TypeIdentity) -> Result<(), SegmentError> {
        let i = &self.info;
        if i.kind == id.kind && i.type_hash == id.hash() && i.elem_size == id.size && i.elem_align == id.align {
            Ok(())
        } else {
            Err(SegmentError::TypeMismatch {
                expected: format!("{} of {} ({} bytes)", id.kind.name(), id.name, id.size),
                found: format!("{} of {} ({} bytes)", i.kind.name(), i.type_name, i.elem_size),
            })
        }
    }

    /// Maps the same segment again (a new descriptor and mapping), checking
    /// its header as a process receiving it would.
    ///
    /// # Errors
    ///
    /// [`SegmentError::Io`] if the descriptor cannot be duplicated, and the
    /// validation errors of [`Segment::from_fd`].
    pub fn try_clone(&self) -> Result<Self, SegmentError> {
        let fd = self.fd.try_clone().map_err(SegmentError::io("dup"))?;
        let mut seg = Self::attach(fd, None, None)?;
        seg.name.clone_from(&self.name);
        Ok(seg)
    }

    /// The descriptor, for handing the segment to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn init(fd: OwnedFd, total: usize, name: Option<String>, id: &TypeIdentity) -> Result<Self, SegmentError> {
        // SAFETY: total >= HEADER_LEN > 0; the mapping is owned by the Segment
        // built below (or released by its drop if this function fails later).
        let base = unsafe { sys::map_shared(fd.as_fd(), total) }.map_err(SegmentError::io("mmap"))?;
        let pid = sys::getpid();
        let raw = RawHeader::new(id, (total - HEADER_LEN) as u64, pid, crate::liveness::own_start_time());
        // SAFETY: the mapping is at least HEADER_LEN bytes and page-aligned;
        // every access to a header, here and in any attacher (of a named
        // segment, possibly racing this), is atomic per field in the widths
        // `RawHeader::load`/`store` use. Attachers that copy it before
        // `state` is published refuse it.
        unsafe { raw.store(base.cast::<RawHeader>().as_ptr()) };
        let info = raw_ready(&raw, total as u64);
        // Release: pairs with Acquire in `attach`; publishes the header fields.
        state_word(base).store(STATE_READY, Release);
        Ok(Self {
            base,
            len: total,
            fd,
            name,
            info,
        })
    }

    fn attach(fd: OwnedFd, name: Option<String>, expect: Option<&TypeIdentity>) -> Result<Self, SegmentError> {
        let (file_len, _, _) = sys::file_info(fd.as_fd()).map_err(SegmentError::io("fstat"))?;
        if file_len < HEADER_LEN as u64 {
            return Err(SegmentError::TooShort {
                len: file_len,
                min: HEADER_LEN as u64,
            });
        }
        let total = usize::try_from(file_len).map_err(|_| SegmentError::InvalidSize {
            requested: file_len,
            reason: "larger than the address space",
        })?;
        // SAFETY: total >= HEADER_LEN > 0; `Segment`'s drop releases the mapping.
        let base = unsafe { sys::map_shared(fd.as_fd(), total) }.map_err(SegmentError::io("mmap"))?;
        let mut seg = Self {
            base,
            len: total,
            fd,
            name,
            info: SegmentInfo {
                kind: SegmentKind::BYTES,
                type_name: String::new(),
                type_hash: 0,
                elem_size: 0,
                elem_align: 0,
                total_len: 0,
                payload_len: 0,
                creator_pid: 0,
                creator_start: 0,
            },
        };
        // Acquire: pairs with the Release store of READY in `init`; when this
        // load sees READY, the header fields written before it are visible
        // to the copy below. The value loaded here is the one validated.
        let state = state_word(base).load(Acquire);
        // SAFETY: the page-aligned mapping holds at least HEADER_LEN bytes
        // (checked above); every access to a header is atomic per field
        // (see `init`). The copy is private, so a peer writing later cannot
        // change what is validated.
        let mut raw = unsafe { RawHeader::load(base.cast::<RawHeader>().as_ptr()) };
        raw.state = state;
        seg.info = raw.validate(file_len, expect)?;
        Ok(seg)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: base/len are the one mapping this Segment made; values and
        // arrays hold an `Arc<Segment>`, so no pointer into it outlives this.
        unsafe { sys::unmap(self.base, self.len) };
    }
}

fn raw_ready(raw: &RawHeader, total: u64) -> SegmentInfo {
    let mut ready = *raw;
    ready.state = STATE_READY;
    ready.validate(total, None).expect("a header we just wrote is valid")
}

#[allow(clippy::disallowed_types, reason = "the header's state word is shared memory")]
#[allow(
    clippy::cast_ptr_alignment,
    reason = "offset 12 of a page-aligned mapping is 4-aligned"
)]
fn state_word(base: NonNull<u8>) -> &'static AtomicU32 {
    let word = base.as_ptr().wrapping_add(12).cast::<AtomicU32>();
    debug_assert!(word.is_aligned());
    // SAFETY: offset 12 lies inside the header of a live, page-aligned
    // mapping, so it is in bounds and 4-byte aligned; AtomicU32 has the layout
    // of u32 and any bit pattern is valid. The 'static lifetime is confined to
    // this module, which never keeps it past the Segment owning the mapping.
    unsafe { &*word }
}

/// Total segment length for a payload, or why it is refused.
fn checked_total(id: &TypeIdentity, payload_len: usize) -> Result<usize, SegmentError> {
    if id.align as usize > MAX_ALIGN {
        return Err(SegmentError::UnsupportedType {
            name: id.name,
            reason: "alignment above 128 bytes",
        });
    }
    if payload_len == 0 {
        return Err(SegmentError::InvalidSize {
            requested: 0,
            reason: "a segment must hold at least one byte",
        });
    }
    let limit = max_segment_len();
    match payload_len.checked_add(HEADER_LEN) {
        Some(total) if (total as u64) <= limit => Ok(total),
        _ => Err(SegmentError::InvalidSize {
            requested: payload_len as u64,
            reason: "larger than this machine's memory",
        }),
    }
}

/// Largest segment we create: the machine's RAM and swap (an untouched
/// mapping costs nothing, but touching more than exists ends in SIGBUS).
fn max_segment_len() -> u64 {
    sys::memory_size()
}

/// `/name` after checking `name`.
fn object_path(name: &str) -> Result<String, SegmentError> {
    let bad = |reason| SegmentError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("longer than 200 characters"));
    }
    if name.starts_with('.') {
        return Err(bad("starts with a dot"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("only letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(format!("/{name}"))
}

fn short_name(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

#[cfg(test)]
mod tests;
