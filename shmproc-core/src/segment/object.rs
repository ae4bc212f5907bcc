//! [`SegmentObject`]: the common part of every object that lives in a
//! segment of its own, and [`segment_object!`](crate::segment_object), which
//! writes its serde and `Send`/`Sync` impls.
//!
//! Such an object is its segment plus a typed view: it is created in a new
//! anonymous or named segment, opened by name, attached to a segment handed
//! over by another process, and serialised as that segment (its descriptor
//! travels beside the bytes, see [`crate::handle`]). Only the checks of the
//! payload differ between objects; the rest is here, once.

use super::{Mapped, Segment, TypeIdentity};
use crate::error::SegmentError;

/// An object that lives in a segment of its own and is shared by sending
/// that segment.
///
/// Implement the three required methods; the provided ones create, open
/// and attach it, and [`segment_object!`](crate::segment_object) writes its
/// `Serialize`/`Deserialize` (and, if asked, `Send`/`Sync`) impls from them.
///
/// # Adopting it in a sibling crate
///
/// ```ignore
/// impl<T: ShmSafe> shmproc_core::SegmentObject for Ring<T> {
///     fn identity() -> TypeIdentity { TypeIdentity::of::<T>(SegmentKind::RING_SPSC) }
///     fn attach(seg: Segment) -> Result<Self, SegmentError> { /* check header, payload */ }
///     fn segment(&self) -> &Segment { &self.seg }
/// }
/// // SAFETY: (why the type may cross threads: its shared words are atomics only, ...)
/// shmproc_core::segment_object!(unsafe Send + Sync, [T: ShmSafe] Ring<T>);
/// // or, for a type whose Send/Sync come from its fields:
/// shmproc_core::segment_object!([T: ShmSafe] Ring<T>);
/// ```
///
/// Then `Ring::<T>::create(len)`, `create_named_in(name, len)`, `open_named(name)`
/// replace the hand-written constructors (wrap them in the object's own
/// `new`/`create_named`/`open`, which also write the initial contents).
pub trait SegmentObject: Sized {
    /// The identity its segment carries (kind, and type of the payload).
    fn identity() -> TypeIdentity;

    /// Wraps `seg` after checking that it carries
    /// [`identity`](Self::identity) and everything else another process may
    /// have written (lengths, headers): a segment received from another
    /// process is input.
    ///
    /// # Errors
    ///
    /// [`SegmentError::TypeMismatch`], [`SegmentError::BadPayload`], or the
    /// object's own validation error.
    fn attach(seg: Segment) -> Result<Self, SegmentError>;

    /// The segment it lives in (what it serialises as).
    fn segment(&self) -> &Segment;

    /// A new object in a new anonymous segment of `payload_len` bytes,
    /// zeroed.
    ///
    /// # Errors
    ///
    /// As [`Segment::create`], then [`attach`](Self::attach).
    fn create(payload_len: usize) -> Result<Self, SegmentError> {
        Self::attach(Segment::create(&Self::identity(), payload_len)?)
    }

    /// A new object in a new named segment `name` of `payload_len` bytes,
    /// zeroed, which other processes can open with
    /// [`open_named`](Self::open_named).
    ///
    /// # Errors
    ///
    /// As [`Segment::create_named`], then [`attach`](Self::attach).
    fn create_named_in(name: &str, payload_len: usize) -> Result<Self, SegmentError> {
        Self::attach(Segment::create_named(name, &Self::identity(), payload_len)?)
    }

    /// Opens the named object `name`, checking its type.
    ///
    /// # Errors
    ///
    /// As [`Segment::open_named`] (including [`SegmentError::TypeMismatch`]),
    /// then [`attach`](Self::attach).
    fn open_named(name: &str) -> Result<Self, SegmentError> {
        Self::attach(Segment::open_named(name, Some(&Self::identity()))?)
    }
}

impl<T> Mapped<T> {
    /// Wraps `seg` as [`Mapped::new`] does, and checks that the payload
    /// holds a whole number of `T`s, `exactly` of them when given. Returns
    /// the view and the count.
    ///
    /// # Errors
    ///
    /// As [`Mapped::new`]; [`SegmentError::BadPayload`] when the payload is
    /// not the expected number of `T`s (or `T` is zero-sized).
    pub fn with_count(seg: Segment, id: &TypeIdentity, exactly: Option<usize>) -> Result<(Self, usize), SegmentError> {
        let map = Self::new(seg, id)?;
        let bytes = map.segment().payload_len();
        let size = size_of::<T>();
        let count = bytes.checked_div(size).filter(|&n| n * size == bytes);
        match count {
            Some(n) if exactly.is_none_or(|want| want == n) => Ok((map, n)),
            _ => Err(SegmentError::BadPayload {
                len: bytes as u64,
                elem_size: size as u64,
            }),
        }
    }
}

/// Writes the `Serialize` and `Deserialize` impls of a [`SegmentObject`]
/// (it serialises as its segment; deserialising attaches to the segment
/// received and runs every check of [`SegmentObject::attach`]), and, with
/// `unsafe Send + Sync` first, its `Send` and `Sync` impls.
///
/// The generics go in brackets before the type: `[T: ShmSafe] RawValue<T>`,
/// `[] Event`. The `unsafe` form must be preceded by a `// SAFETY:` comment
/// that says why the type may be sent to and shared between threads (its
/// shared state is atomics only, its mapping is kept alive, ...).
///
/// ```ignore
/// // SAFETY: the value is reached only through atomic accesses; T is plain data.
/// shmproc_core::segment_object!(unsafe Send + Sync, [T: ShmSafe] RawValue<T>);
/// ```
///
/// See [`SegmentObject`] for how a crate adopts it.
#[macro_export]
macro_rules! segment_object {
    (unsafe Send + Sync, [$($gen:tt)*] $ty:ty) => {
        // SAFETY: stated by the invocation's `// SAFETY:` comment (the macro
        // requires one).
        unsafe impl<$($gen)*> Send for $ty {}
        // SAFETY: as above.
        unsafe impl<$($gen)*> Sync for $ty {}
        $crate::segment_object!([$($gen)*] $ty);
    };
    ([$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $crate::__private::serde::Serialize for $ty {
            // The generic parameters are named so as not to clash with the
            // object's own (`Shared<S>` has an `S`).
            fn serialize<Ser: $crate::__private::serde::Serializer>(
                &self,
                serializer: Ser,
            ) -> Result<Ser::Ok, Ser::Error> {
                $crate::__private::serde::Serialize::serialize(
                    <Self as $crate::SegmentObject>::segment(self),
                    serializer,
                )
            }
        }
        impl<'de, $($gen)*> $crate::__private::serde::Deserialize<'de> for $ty {
            fn deserialize<De: $crate::__private::serde::Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
                let seg = <$crate::Segment as $crate::__private::serde::Deserialize>::deserialize(deserializer)?;
                <Self as $crate::SegmentObject>::attach(seg).map_err($crate::handle::decode_error)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::os::fd::BorrowedFd;

    use crate::{RawArray, RawValue, SegmentError};

    /// Serialises `value` and deserialises the bytes as `U`, as a child
    /// process receiving it as an argument does.
    fn round_trip<T: serde::Serialize, U: serde::de::DeserializeOwned>(value: &T) -> Result<U, crate::HandleError> {
        let (bytes, fds) = crate::handle::encode(value).expect("serialise");
        let fds = (fds.into_iter())
            // SAFETY: the descriptors belong to `value`'s segments, alive here.
            .map(|fd| unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned())
            .collect::<Result<Vec<_>, _>>()
            .expect("dup");
        crate::handle::decode(&bytes, fds)
    }

    #[test]
    #[cfg_attr(miri, ignore = "passes descriptors through the handle table")]
    fn a_received_object_shares_and_is_checked() {
        let v = RawValue::new(41u64).expect("create");
        let w: RawValue<u64> = round_trip(&v).expect("same type");
        w.set(42);
        assert_eq!(v.get(), 42, "the received value shares the segment");
        let wrong = round_trip::<_, RawValue<i64>>(&v).expect_err("i64 is not u64");
        assert!(wrong.to_string().contains("i64"), "{wrong}");
        let as_array = round_trip::<_, RawArray<u64>>(&v).expect_err("a value is not an array");
        assert!(!as_array.to_string().is_empty());

        let a = RawArray::from_slice(&[1u32, 2, 3]).expect("create");
        let b: RawArray<u32> = round_trip(&a).expect("same type");
        assert_eq!(b.to_vec(), [1, 2, 3]);
        b.set(0, 9).expect("in bounds");
        assert_eq!(a.get(0), Some(9));
    }

    #[test]
    fn a_payload_of_the_wrong_length_is_refused() {
        use crate::segment::{Mapped, Segment, SegmentKind, TypeIdentity};
        let id = TypeIdentity::of::<u32>(SegmentKind::ARRAY);
        let seg = Segment::create(&id, 12).expect("create");
        let (_, n) = Mapped::<u32>::with_count(seg.try_clone().expect("clone"), &id, None).expect("three u32");
        assert_eq!(n, 3);
        let one = Mapped::<u32>::with_count(seg.try_clone().expect("clone"), &id, Some(1));
        assert!(matches!(one, Err(SegmentError::BadPayload { len: 12, elem_size: 4 })));
        let id8 = TypeIdentity::of::<u64>(SegmentKind::ARRAY);
        let seg8 = Segment::create(&id8, 12).expect("create");
        let odd = Mapped::<u64>::with_count(seg8, &id8, None);
        assert!(matches!(odd, Err(SegmentError::BadPayload { len: 12, elem_size: 8 })));
    }
}
