//! A synchronisation object's words in their own shared segment.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shm_core::segment::Mapped;
use shm_core::{Segment, SegmentError, SegmentKind, TypeIdentity};

/// The shared state of one kind of object: `repr(C)` words that are valid
/// in every bit pattern, all zero when fresh.
///
/// # Safety
///
/// The type must consist of `AtomicU32` fields only (no padding, no
/// pointers), so that any bytes another process wrote are a valid value and
/// shared references to it may be used from several processes at once.
pub(crate) unsafe trait SharedState: Send + Sync + 'static {
    /// The segment kind that holds it.
    const KIND: SegmentKind;
}

/// A handle to an object's state in a shared segment.
pub(crate) struct Shared<S> {
    map: Mapped<S>,
}

// SAFETY: S is atomics only (SharedState) and `map` keeps the mapping alive.
unsafe impl<S: SharedState> Send for Shared<S> {}
// SAFETY: as above; only shared references to S are handed out.
unsafe impl<S: SharedState> Sync for Shared<S> {}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self { map: self.map.clone() }
    }
}

impl<S> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("map", &self.map).finish()
    }
}

impl<S: SharedState> Shared<S> {
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<S>(S::KIND)
    }

    /// A fresh, zeroed state in a new anonymous segment.
    pub(crate) fn create() -> Result<Self, SegmentError> {
        Self::from_mapped(Mapped::new(
            Segment::create(&Self::identity(), size_of::<S>())?,
            &Self::identity(),
        )?)
    }

    /// A fresh, zeroed state in a new segment named `name`, which other
    /// processes (ours or not) may [`Shared::open`].
    pub(crate) fn create_named(name: &str) -> Result<Self, SegmentError> {
        Self::from_mapped(Mapped::new(
            Segment::create_named(name, &Self::identity(), size_of::<S>())?,
            &Self::identity(),
        )?)
    }

    /// The state in the segment named `name`: its header says it holds an
    /// `S` of this kind ([`SegmentError::TypeMismatch`] names both types
    /// otherwise) and its payload is exactly one `S`.
    pub(crate) fn open(name: &str) -> Result<Self, SegmentError> {
        Self::from_mapped(Mapped::new(
            Segment::open_named(name, Some(&Self::identity()))?,
            &Self::identity(),
        )?)
    }

    /// Checks that the mapping holds exactly one `S`.
    fn from_mapped(map: Mapped<S>) -> Result<Self, SegmentError> {
        let len = map.segment().payload_len();
        if len != size_of::<S>() {
            return Err(SegmentError::BadPayload {
                len: len as u64,
                elem_size: size_of::<S>() as u64,
            });
        }
        Ok(Self { map })
    }

    /// The state.
    #[inline]
    pub(crate) fn get(&self) -> &S {
        // SAFETY: the payload holds exactly one S (checked), 128-aligned;
        // S is atomics only, valid in any bit pattern and meant to be shared;
        // the mapping lives as long as `self.map`.
        unsafe { self.map.as_ptr().as_ref() }
    }
}

impl<S: SharedState> Serialize for Shared<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        self.map.serialize(serializer)
    }
}

impl<'de, S: SharedState> Deserialize<'de> for Shared<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Mapped::deserialize_as(deserializer, &Self::identity())?;
        Self::from_mapped(map).map_err(shm_core::handle::decode_error)
    }
}
