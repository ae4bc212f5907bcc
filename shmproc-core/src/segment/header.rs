//! The header at the start of every segment, and how a copy of it is checked.
//!
//! Layout (128 bytes, little-endian host order, `repr(C)`):
//!
//! | offset | field            | meaning                                              |
//! |-------:|------------------|------------------------------------------------------|
//! | 0      | `magic`          | [`MAGIC`]                                            |
//! | 8      | `version`        | [`LAYOUT_VERSION`]                                   |
//! | 12     | `state`          | [`STATE_READY`] once the creator finished; else not  |
//! | 16     | `kind`           | what the payload is ([`SegmentKind`])                |
//! | 20     | `elem_align`     | alignment of the element type                        |
//! | 24     | `elem_size`      | size of the element type                             |
//! | 32     | `type_hash`      | hash of the element type's name, size and alignment  |
//! | 40     | `total_len`      | length of the whole segment (header included)        |
//! | 48     | `payload_offset` | where the payload starts (`HEADER_LEN`)              |
//! | 56     | `payload_len`    | payload length in bytes                              |
//! | 64     | `creator_pid`    | pid of the creating process                          |
//! | 68     | `reserved`       | flags: bit 0 [`GROWABLE`], the rest zero             |
//! | 72     | `creator_start`  | its start time, to tell it from a later reuse of pid |
//! | 80     | `type_name`      | the element type's name, truncated, NUL-padded       |
//!
//! Readers never trust it. Another process may write the header at any
//! moment, so it is never copied as a whole struct with plain or volatile
//! accesses (a racing write would make that a data race): every field is
//! moved through a relaxed atomic of its own width ([`RawHeader::load`],
//! [`RawHeader::store`]; the state word is only ever touched as an
//! `AtomicU32`). An attacher loads `state` with Acquire, copies the other
//! fields after it, and validates that copy together with the state value
//! it acquired ([`RawHeader::validate`]), so a peer scribbling concurrently
//! can make attach fail but never make it read out of bounds.

use std::fmt;
use std::mem::{align_of, offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::atomic::copy;

use crate::error::SegmentError;

/// First eight bytes of every shm segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMSEG\x00\x01");
/// Version of this header layout; bumped on any change to it.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes taken by the header; the payload starts here, aligned to 128.
pub const HEADER_LEN: usize = 128;
/// Value of `state` once the creator has finished writing the header.
pub const STATE_READY: u32 = u32::from_le_bytes(*b"REDY");
/// Largest alignment a payload type may ask for.
pub const MAX_ALIGN: usize = 128;

/// Flag in the header's `reserved` word: the segment may grow after it was
/// created (see [`Segment::create_growable`](super::Segment::create_growable)); `total_len` is then its
/// first length, and the file may be longer.
pub const GROWABLE: u32 = 1;
const NAME_LEN: usize = 48;

/// What a segment's payload is, so a lock is never attached as a queue.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentKind(pub u32);

impl SegmentKind {
    /// Untyped bytes.
    pub const BYTES: Self = Self(1);
    /// One value of the element type ([`crate::RawValue`]).
    pub const VALUE: Self = Self(2);
    /// A run of elements ([`crate::RawArray`]).
    pub const ARRAY: Self = Self(3);
    /// A lock.
    pub const LOCK: Self = Self(16);
    /// A recursive lock.
    pub const RLOCK: Self = Self(17);
    /// A semaphore.
    pub const SEMAPHORE: Self = Self(18);
    /// An event.
    pub const EVENT: Self = Self(19);
    /// A condition variable.
    pub const CONDITION: Self = Self(20);
    /// A barrier.
    pub const BARRIER: Self = Self(21);
    /// A single-producer single-consumer ring of plain data.
    pub const RING_SPSC: Self = Self(32);
    /// A multi-producer multi-consumer ring of plain data.
    pub const RING_MPMC: Self = Self(33);
    /// A single-producer single-consumer ring of framed byte records.
    pub const RING_BYTES: Self = Self(34);
    /// A queue of serialised messages (`Queue`, `JoinableQueue`,
    /// `SimpleQueue`).
    pub const QUEUE: Self = Self(35);
    /// The shared mailbox line and sleep words of a duplex channel.
    pub const DUPLEX: Self = Self(36);
    /// A manager's dict, list or namespace.
    pub const MANAGER_STORE: Self = Self(48);
    /// The mailboxes of a manager's served objects.
    pub const MANAGER_HUB: Self = Self(49);
    /// A pool's words: each worker's pid, running task and tasks done.
    pub const POOL: Self = Self(50);

    /// A readable name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::BYTES => "bytes",
            Self::VALUE => "value",
            Self::ARRAY => "array",
            Self::LOCK => "lock",
            Self::RLOCK => "rlock",
            Self::SEMAPHORE => "semaphore",
            Self::EVENT => "event",
            Self::CONDITION => "condition",
            Self::BARRIER => "barrier",
            Self::RING_SPSC => "spsc ring",
            Self::RING_MPMC => "mpmc ring",
            Self::RING_BYTES => "byte ring",
            Self::QUEUE => "queue",
            Self::DUPLEX => "duplex channel",
            Self::MANAGER_STORE => "manager container",
            Self::MANAGER_HUB => "manager hub",
            Self::POOL => "pool",
            _ => "object",
        }
    }
}

impl fmt::Debug for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// Which type a segment holds: checked on every attach.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TypeIdentity {
    /// The kind of object.
    pub kind: SegmentKind,
    /// The element type's name (`core::any::type_name`).
    pub name: &'static str,
    /// Element size in bytes.
    pub size: u64,
    /// Element alignment in bytes.
    pub align: u32,
}

impl TypeIdentity {
    /// The identity of element type `T` in an object of `kind`.
    pub fn of<T>(kind: SegmentKind) -> Self {
        Self {
            kind,
            name: core::any::type_name::<T>(),
            size: size_of::<T>() as u64,
            align: u32::try_from(align_of::<T>()).unwrap_or(u32::MAX),
        }
    }

    /// FNV-1a over the name, then the size and alignment.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = self
            .name
            .bytes()
            .chain(self.size.to_le_bytes())
            .chain(self.align.to_le_bytes());
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

/// The header as stored. Every field accepts any bit pattern.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(crate) struct RawHeader {
    pub magic: u64,
    pub version: u32,
    pub state: u32,
    pub kind: u32,
    pub elem_align: u32,
    pub elem_size: u64,
    pub type_hash: u64,
    pub total_len: u64,
    pub payload_offset: u64,
    pub payload_len: u64,
    pub creator_pid: u32,
    pub reserved: u32,
    pub creator_start: u64,
    pub type_name: [u8; NAME_LEN],
}

const _: () = {
    assert!(size_of::<RawHeader>() == HEADER_LEN);
    assert!(offset_of!(RawHeader, state) == 12);
    assert!(offset_of!(RawHeader, creator_pid) == 64);
    assert!(offset_of!(RawHeader, type_name) == 80);
    assert!(HEADER_LEN.is_multiple_of(MAX_ALIGN));
};

/// What a validated header says, in native types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The kind of object.
    pub kind: SegmentKind,
    /// Name of the element type as written by the creator (truncated to 48 bytes).
    pub type_name: String,
    /// Hash of the element type's identity.
    pub type_hash: u64,
    /// Element size in bytes.
    pub elem_size: u64,
    /// Element alignment.
    pub elem_align: u32,
    /// Length of the whole segment.
    pub total_len: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Pid of the process that created it.
    pub creator_pid: u32,
    /// Start time of that process (clock ticks since boot).
    pub creator_start: u64,
    /// Whether the segment may grow past `total_len` (its first length).
    pub growable: bool,
}

impl RawHeader {
    /// A header for a new segment, not yet marked ready.
    pub(crate) fn new(id: &TypeIdentity, payload_len: u64, creator_pid: u32, creator_start: u64) -> Self {
        let mut type_name = [0u8; NAME_LEN];
        let n = id.name.len().min(NAME_LEN);
        type_name[..n].copy_from_slice(&id.name.as_bytes()[..n]);
        Self {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            state: 0,
            kind: id.kind.0,
            elem_align: id.align,
            elem_size: id.size,
            type_hash: id.hash(),
            total_len: HEADER_LEN as u64 + payload_len,
            payload_offset: HEADER_LEN as u64,
            payload_len,
            creator_pid,
            reserved: 0,
            creator_start,
            type_name,
        }
    }

    /// Copies every field except `state` out of the header at `base`, each
    /// through a relaxed atomic of the field's own width; `state` is left 0
    /// (the caller loads it on its own, with Acquire, before this copy).
    ///
    /// # Safety
    ///
    /// `base` is aligned and valid for reads of [`HEADER_LEN`] bytes of a
    /// live mapping, and every access others make to the header is atomic
    /// with the same field widths (this module's `store` and the `AtomicU32`
    /// state word). As for [`copy::load`], `base` is not derived from a
    /// shared reference.
    pub(crate) unsafe fn load(base: *const Self) -> Self {
        macro_rules! field {
            ($f:ident: $t:ty) => {
                // SAFETY: `base` is aligned and in bounds (caller), so the
                // field place is too (`repr(C)`); the projection makes no
                // reference; every access to the field is atomic of this
                // width (caller).
                unsafe { copy::load::<$t>(&raw const (*base).$f) }
            };
        }
        Self {
            magic: field!(magic: u64),
            version: field!(version: u32),
            state: 0,
            kind: field!(kind: u32),
            elem_align: field!(elem_align: u32),
            elem_size: field!(elem_size: u64),
            type_hash: field!(type_hash: u64),
            total_len: field!(total_len: u64),
            payload_offset: field!(payload_offset: u64),
            payload_len: field!(payload_len: u64),
            creator_pid: field!(creator_pid: u32),
            reserved: field!(reserved: u32),
            creator_start: field!(creator_start: u64),
            type_name: field!(type_name: [u8; NAME_LEN]),
        }
    }

    /// Writes every field except `state` to the header at `base`, in the
    /// units [`RawHeader::load`] reads; the caller publishes `state` after
    /// it with Release.
    ///
    /// # Safety
    ///
    /// As [`RawHeader::load`], for writes.
    pub(crate) unsafe fn store(&self, base: *mut Self) {
        macro_rules! field {
            ($f:ident: $t:ty) => {
                // SAFETY: as in `load`, for a write.
                unsafe { copy::store::<$t>(&raw mut (*base).$f, self.$f) }
            };
        }
        // The creator first and the magic last: `sweep` reads headers that
        // carry the magic but no READY state yet, and judges them by their
        // creator.
        field!(creator_pid: u32);
        field!(reserved: u32);
        field!(creator_start: u64);
        field!(version: u32);
        field!(kind: u32);
        field!(elem_align: u32);
        field!(elem_size: u64);
        field!(type_hash: u64);
        field!(total_len: u64);
        field!(payload_offset: u64);
        field!(payload_len: u64);
        field!(type_name: [u8; NAME_LEN]);
        field!(magic: u64);
    }

    /// Checks every field of this copy against the file it came from
    /// (`file_len` bytes long) and, if given, the expected type. `state` is
    /// the copy's own field: an attacher puts there the value it loaded
    /// with Acquire.
    ///
    /// An all-zero header (a creator that has not started writing, or died
    /// first) is [`SegmentError::NotInitialized`]; other wrong magics are
    /// [`SegmentError::BadMagic`].
    pub(crate) fn validate(&self, file_len: u64, expect: Option<&TypeIdentity>) -> Result<SegmentInfo, SegmentError> {
        if self.magic == 0 && self.state != STATE_READY {
            return Err(SegmentError::NotInitialized);
        }
        if self.magic != MAGIC {
            return Err(SegmentError::BadMagic {
                found: self.magic,
                expected: MAGIC,
            });
        }
        if self.version != LAYOUT_VERSION {
            return Err(SegmentError::VersionMismatch {
                expected: LAYOUT_VERSION,
                found: self.version,
            });
        }
        if self.state != STATE_READY {
            return Err(SegmentError::NotInitialized);
        }
        let growable = self.reserved & GROWABLE != 0;
        if self.reserved & !GROWABLE != 0 {
            return Err(SegmentError::Corrupted {
                field: "flags",
                found: u64::from(self.reserved),
            });
        }
        if (growable && file_len < self.total_len) || (!growable && self.total_len != file_len) {
            return Err(SegmentError::LengthMismatch {
                header: self.total_len,
                actual: file_len,
            });
        }
        if self.payload_offset != HEADER_LEN as u64 {
            return Err(SegmentError::Corrupted {
                field: "payload_offset",
                found: self.payload_offset,
            });
        }
        if self.payload_len.checked_add(HEADER_LEN as u64) != Some(self.total_len) {
            return Err(SegmentError::Corrupted {
                field: "payload_len",
                found: self.payload_len,
            });
        }
        if !self.elem_align.is_power_of_two() || self.elem_align as usize > MAX_ALIGN {
            return Err(SegmentError::Corrupted {
                field: "elem_align",
                found: u64::from(self.elem_align),
            });
        }
        let name_end = self.type_name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        let type_name = String::from_utf8_lossy(&self.type_name[..name_end]).into_owned();
        if let Some(id) = expect {
            let same = self.kind == id.kind.0
                && self.type_hash == id.hash()
                && self.elem_size == id.size
                && self.elem_align == id.align;
            if !same {
                return Err(SegmentError::TypeMismatch {
                    expected: format!("{} of {} ({} bytes)", id.kind.name(), id.name, id.size),
                    found: format!(
                        "{} of {} ({} bytes)",
                        SegmentKind(self.kind).name(),
                        type_name,
                        self.elem_size
                    ),
                });
            }
        }
        Ok(SegmentInfo {
            kind: SegmentKind(self.kind),
            type_name,
            type_hash: self.type_hash,
            elem_size: self.elem_size,
            elem_align: self.elem_align,
            total_len: self.total_len,
            payload_len: self.payload_len,
            creator_pid: self.creator_pid,
            creator_start: self.creator_start,
            growable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> RawHeader {
        let mut h = RawHeader::new(&TypeIdentity::of::<u64>(SegmentKind::VALUE), 8, 1, 2);
        h.state = STATE_READY;
        h
    }

    const LEN: u64 = HEADER_LEN as u64 + 8;

    #[test]
    fn a_good_header_validates() {
        let info = ready()
            .validate(LEN, Some(&TypeIdentity::of::<u64>(SegmentKind::VALUE)))
            .expect("valid");
        assert_eq!(info.payload_len, 8);
        assert_eq!(info.type_name, "u64");
    }

    #[test]
    fn damaged_copies_are_refused() {
        let zero = RawHeader::read_from_bytes(&[0u8; HEADER_LEN]).expect("header sized");
        assert!(matches!(zero.validate(LEN, None), Err(SegmentError::NotInitialized)));
        let mut h = ready();
        h.magic = u64::from_le_bytes(*b"garbage!");
        assert!(matches!(h.validate(LEN, None), Err(SegmentError::BadMagic { .. })));
        h.state = 0;
        assert!(matches!(h.validate(LEN, None), Err(SegmentError::BadMagic { .. })));
        let mut h = ready();
        h.state = 0;
        assert!(matches!(h.validate(LEN, None), Err(SegmentError::NotInitialized)));
        assert!(matches!(
            ready().validate(LEN + 1, None),
            Err(SegmentError::LengthMismatch {
                header: LEN,
                actual
            }) if actual == LEN + 1
        ));
        let mut h = ready();
        h.version = 9;
        assert!(matches!(
            h.validate(LEN, None),
            Err(SegmentError::VersionMismatch { found: 9, .. })
        ));
    }

    #[test]
    fn store_then_load_round_trips_every_field_but_state() {
        let mut buf = [0u64; HEADER_LEN / 8];
        let h = ready();
        // SAFETY: `buf` is a private, 8-aligned local of HEADER_LEN bytes.
        unsafe { h.store(buf.as_mut_ptr().cast::<RawHeader>()) };
        // SAFETY: as above.
        let back = unsafe { RawHeader::load(buf.as_mut_ptr().cast::<RawHeader>()) };
        assert_eq!(back.state, 0, "state is published separately");
        let mut expected = h;
        expected.state = 0;
        assert_eq!(back.as_bytes(), expected.as_bytes());
    }
}
