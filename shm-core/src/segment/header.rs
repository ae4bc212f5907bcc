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
//! | 68     | `reserved`       | zero                                                 |
//! | 72     | `creator_start`  | its start time, to tell it from a later reuse of pid |
//! | 80     | `type_name`      | the element type's name, truncated, NUL-padded       |
//!
//! Readers never trust it: they take one volatile copy after seeing `state`
//! published and validate every field of that copy ([`RawHeader::validate`]),
//! so a peer scribbling concurrently can make attach fail but never make it
//! read out of bounds.

use std::fmt;
use std::mem::{align_of, offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

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

    /// Checks every field of this copy against the file it came from
    /// (`file_len` bytes long) and, if given, the expected type.
    pub(crate) fn validate(&self, file_len: u64, expect: Option<&TypeIdentity>) -> Result<SegmentInfo, SegmentError> {
        if self.magic != MAGIC {
            return Err(SegmentError::BadMagic { found: self.magic });
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
        if self.total_len != file_len {
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
        })
    }
}
