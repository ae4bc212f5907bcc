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

mod census;
mod header;
mod mapped;
mod object;
mod sweep;

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

pub use header::{GROWABLE, HEADER_LEN, LAYOUT_VERSION, MAGIC, MAX_ALIGN, SegmentInfo, SegmentKind, TypeIdentity};
pub(crate) use header::{RawHeader, STATE_READY};
// Hidden: used by the sibling crates shmproc-sync/shmproc-collections, not API.
pub use census::{Field, LiveSegment, State, census, find, word_at, word64_at};
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

    /// Creates an anonymous segment of `payload_len` bytes that can grow
    /// later with [`Segment::grow_to`], up to the machine's memory.
    ///
    /// Every process maps the whole of that bound at once (address space
    /// only: a page costs memory once the file covers it and someone
    /// touches it), so growth needs no remapping and every process sees it
    /// at once. The file is sealed against shrinking, so a page once inside
    /// it stays there; a process must still check an offset against
    /// [`Segment::current_len`] before it touches bytes past what it saw
    /// (an access past the end of the file raises `SIGBUS`).
    ///
    /// # Errors
    ///
    /// As [`Segment::create`].
    pub fn create_growable(id: &TypeIdentity, payload_len: usize) -> Result<Self, SegmentError> {
        let total = checked_total(id, payload_len)?;
        let cname = CString::new(format!("shm:{}", short_name(id.name))).unwrap_or_default();
        let fd = sys::memfd(&cname).map_err(SegmentError::io("memfd_create"))?;
        sys::set_len(fd.as_fd(), total as u64).map_err(SegmentError::io("ftruncate"))?;
        sys::seal_shrink(fd.as_fd()).map_err(SegmentError::io("seal"))?;
        Self::init_mapped(fd, total, growable_reserve(total), None, id, true)
    }

    /// The current length of a growable segment's payload (the file's
    /// length less the header), as the kernel says now; never more than
    /// this process mapped.
    ///
    /// # Errors
    ///
    /// [`SegmentError::Io`] when `fstat` fails.
    pub fn current_len(&self) -> Result<usize, SegmentError> {
        let (file_len, _, _) = sys::file_info(self.fd.as_fd()).map_err(SegmentError::io("fstat"))?;
        let file_len = usize::try_from(file_len).unwrap_or(usize::MAX).min(self.len);
        Ok(file_len.saturating_sub(HEADER_LEN))
    }

    /// Grows a growable segment's payload to at least `payload_len` bytes
    /// (no change when it is that long already).
    ///
    /// # Errors
    ///
    /// [`SegmentError::InvalidSize`] for a segment that cannot grow or a
    /// length past what this process mapped; [`SegmentError::Io`] when the
    /// kernel refuses (out of memory).
    pub fn grow_to(&self, payload_len: usize) -> Result<(), SegmentError> {
        let want = payload_len.checked_add(HEADER_LEN).filter(|&t| t <= self.len);
        let Some(total) = want.filter(|_| self.info.growable) else {
            return Err(SegmentError::InvalidSize {
                requested: payload_len as u64,
                reason: if self.info.growable {
                    "larger than this machine's memory"
                } else {
                    "the segment cannot grow"
                },
            });
        };
        if self.current_len()? >= payload_len {
            return Ok(());
        }
        match sys::set_len(self.fd.as_fd(), total as u64) {
            Ok(()) => Ok(()),
            // Sealed against shrinking: another process grew it further.
            Err(_) if self.current_len()? >= payload_len => Ok(()),
            Err(e) => Err(SegmentError::Io {
                op: "ftruncate",
                source: e,
            }),
        }
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
        Self::init_mapped(fd, total, total, name, id, false)
    }

    /// Maps `map_len` bytes of the `total`-byte file `fd` (more for a
    /// growable segment) and writes its header.
    fn init_mapped(
        fd: OwnedFd,
        total: usize,
        map_len: usize,
        name: Option<String>,
        id: &TypeIdentity,
        growable: bool,
    ) -> Result<Self, SegmentError> {
        // SAFETY: map_len >= total >= HEADER_LEN > 0; the mapping is owned by
        // the Segment built below (or released by its drop if this function
        // fails later).
        let base = unsafe { sys::map_shared(fd.as_fd(), map_len) }.map_err(SegmentError::io("mmap"))?;
        let pid = sys::getpid();
        let mut raw = RawHeader::new(id, (total - HEADER_LEN) as u64, pid, crate::liveness::own_start_time());
        if growable {
            raw.reserved = GROWABLE;
        }
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
            len: map_len,
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
                growable: false,
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
        if seg.info.growable {
            let reserve = growable_reserve(total);
            // SAFETY: reserve >= total > 0; the old mapping is released by
            // the drop of `seg` below, after the new one is made.
            let wide = unsafe { sys::map_shared(seg.fd.as_fd(), reserve) }.map_err(SegmentError::io("mmap"))?;
            // SAFETY: the same file, so the header just validated is the
            // one at `wide`; `seg` now owns `wide` and unmaps it on drop.
            let old = std::mem::replace(&mut seg.base, wide);
            let old_len = std::mem::replace(&mut seg.len, reserve);
            // SAFETY: `old`/`old_len` are the one mapping made above, no
            // longer referenced.
            unsafe { sys::unmap(old, old_len) };
        }
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

/// How much address space a growable segment maps: the machine's memory,
/// rounded up to a page, and never less than the file's length.
fn growable_reserve(total: usize) -> usize {
    let page = 4096u64;
    let mem = max_segment_len().div_ceil(page).saturating_mul(page);
    usize::try_from(mem).unwrap_or(usize::MAX).max(total)
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
