//! Moving a slot's value in and out of shared memory through relaxed
//! atomic words (the copying paths of every typed ring).

use shmproc_core::ShmSafe;
use shmproc_core::atomic::copy;

/// Whether slots of `T` are copied as bytes ([`copy::load_bytes`], 8-byte
/// words over the slot) rather than in `T`'s own unit ([`copy::load`]):
/// for types of alignment below 8 and 16 bytes or more (byte arrays,
/// mostly), whose own unit would be a byte or two and a 64 KiB copy tens of
/// thousands of atomic loads. Ring slots are never the target of atomic
/// read-modify-writes, and both ends of a ring make this same choice for
/// the same slot (the alignment pattern of a slot is that of its offset in
/// the segment), so their accesses to a slot have the same sizes.
const fn as_bytes<T>() -> bool {
    align_of::<T>() < 8 && size_of::<T>() >= 16
}

/// Reads a slot's `T` from shared memory through relaxed atomic words.
///
/// # Safety
///
/// As [`copy::load`]: `src` aligned, in a live mapping, valid for a `T`, and
/// every access others make to it atomic.
#[inline(always)]
#[allow(clippy::inline_always, reason = "the ring's hot path")]
pub(crate) unsafe fn load_slot<T: ShmSafe>(src: *const T) -> T {
    if as_bytes::<T>() {
        let mut out = std::mem::MaybeUninit::<T>::zeroed();
        // SAFETY: `out` is private and its bytes are initialised (zeroed),
        // so a byte slice over them is valid.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), size_of::<T>()) };
        // SAFETY: the caller's contract for `src`, as bytes.
        unsafe { copy::load_bytes(src.cast::<u8>(), bytes) };
        // SAFETY: every byte written; T (FromBytes) accepts any bits.
        unsafe { out.assume_init() }
    } else {
        // SAFETY: the caller's contract.
        unsafe { copy::load(src) }
    }
}

/// Writes a slot's `T` to shared memory through relaxed atomic words, in
/// the units [`load_slot`] reads them in.
///
/// # Safety
///
/// As [`copy::store`].
#[inline(always)]
#[allow(clippy::inline_always, reason = "the ring's hot path")]
pub(crate) unsafe fn store_slot<T: ShmSafe>(dst: *mut T, value: T) {
    if as_bytes::<T>() {
        // SAFETY: `value` is a private local and T (IntoBytes) has no
        // padding: all its bytes are initialised.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const value).cast::<u8>(), size_of::<T>()) };
        // SAFETY: the caller's contract for `dst`, as bytes.
        unsafe { copy::store_bytes(dst.cast::<u8>(), bytes) };
    } else {
        // SAFETY: the caller's contract.
        unsafe { copy::store(dst, value) };
    }
}
