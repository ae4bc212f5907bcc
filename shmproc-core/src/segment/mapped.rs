//! `Mapped<T>`: a typed view of a segment's payload, shared by its clones.
//!
//! The common part of every object that lives in a segment of its own
//! (values, arrays, locks): the segment stays mapped while any clone lives,
//! the payload is checked to hold the expected type, and the object
//! serialises as its segment (see [`crate::handle`]).

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Segment, TypeIdentity};
use crate::error::SegmentError;

/// A typed view of a segment's payload. Which accesses are sound is the
/// wrapping type's business: this only keeps the mapping alive and checked.
pub struct Mapped<T> {
    seg: Arc<Segment>,
    ptr: NonNull<T>,
}

impl<T> Clone for Mapped<T> {
    fn clone(&self) -> Self {
        Self {
            seg: Arc::clone(&self.seg),
            ptr: self.ptr,
        }
    }
}

impl<T> fmt::Debug for Mapped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapped")
            .field("segment", &self.seg)
            .finish_non_exhaustive()
    }
}

impl<T> Mapped<T> {
    /// Wraps `seg` after checking that it holds `id`'s type and at least one
    /// `T`.
    ///
    /// # Errors
    ///
    /// [`SegmentError::TypeMismatch`], [`SegmentError::BadPayload`].
    pub fn new(seg: Segment, id: &TypeIdentity) -> Result<Self, SegmentError> {
        seg.check_type(id)?;
        if seg.payload_len() < size_of::<T>() {
            return Err(SegmentError::BadPayload {
                len: seg.payload_len() as u64,
                elem_size: size_of::<T>() as u64,
            });
        }
        let ptr = seg.payload().cast::<T>();
        Ok(Self {
            seg: Arc::new(seg),
            ptr,
        })
    }

    /// The payload, as a `T` pointer (128-aligned).
    #[inline]
    pub fn as_ptr(&self) -> NonNull<T> {
        self.ptr
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T> Serialize for Mapped<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (*self.seg).serialize(serializer)
    }
}

impl<T> Mapped<T> {
    /// Deserialises a segment and wraps it as [`Mapped::new`] does.
    ///
    /// # Errors
    ///
    /// The deserialiser's error, carrying the attach or type error.
    pub fn deserialize_as<'de, D: Deserializer<'de>>(deserializer: D, id: &TypeIdentity) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(deserializer)?;
        Self::new(seg, id).map_err(crate::handle::decode_error)
    }
}
