//! A synchronisation object's words in their own shared segment.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
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
    seg: Arc<Segment>,
    ptr: NonNull<S>,
    _s: PhantomData<S>,
}

// SAFETY: S is atomics only (SharedState) and the Arc keeps the mapping alive.
unsafe impl<S: SharedState> Send for Shared<S> {}
// SAFETY: as above; only shared references to S are handed out.
unsafe impl<S: SharedState> Sync for Shared<S> {}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self {
            seg: Arc::clone(&self.seg),
            ptr: self.ptr,
            _s: PhantomData,
        }
    }
}

impl<S> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("segment", &self.seg)
            .finish_non_exhaustive()
    }
}

impl<S: SharedState> Shared<S> {
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<S>(S::KIND)
    }

    /// A fresh, zeroed state in a new anonymous segment.
    pub(crate) fn create() -> Result<Self, SegmentError> {
        Self::from_segment(Segment::create(&Self::identity(), size_of::<S>())?)
    }

    /// Wraps a segment, checking it holds an `S`.
    pub(crate) fn from_segment(seg: Segment) -> Result<Self, SegmentError> {
        seg.check_type(&Self::identity())?;
        if seg.payload_len() != size_of::<S>() {
            return Err(SegmentError::BadPayload {
                len: seg.payload_len() as u64,
                elem_size: size_of::<S>() as u64,
            });
        }
        let ptr = seg.payload().cast::<S>();
        Ok(Self {
            seg: Arc::new(seg),
            ptr,
            _s: PhantomData,
        })
    }

    /// The state.
    #[inline]
    pub(crate) fn get(&self) -> &S {
        // SAFETY: the payload holds exactly one S (checked), 128-aligned;
        // S is atomics only, valid in any bit pattern and meant to be shared;
        // the mapping lives as long as `self.seg`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<S: SharedState> Serialize for Shared<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        (*self.seg).serialize(serializer)
    }
}

impl<'de, S: SharedState> Deserialize<'de> for Shared<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_segment(Segment::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}
