//! Memory that processes share: a value in a `MAP_SHARED | MAP_ANONYMOUS`
//! mapping ([`SharedMap`]) that children forked later see too, on lines of
//! its own ([`Padded`]), made of types valid at zero ([`ZeroShared`]); and
//! the atomics the benches use. Every two-process measurement keeps its
//! start lines, turns and results here, sharing nothing with shm.

use std::io;
use std::ops::Deref;
use std::ptr::{self, NonNull};

/// The atomics of the benches (the workspace bans naming them directly,
/// so that shm's crates take theirs from their `sync` switch; the benches
/// never run under loom).
#[allow(clippy::disallowed_types, reason = "the benches' one use of std's atomics")]
pub type AtomicU32 = std::sync::atomic::AtomicU32;
/// See [`AtomicU32`].
#[allow(clippy::disallowed_types, reason = "the benches' one use of std's atomics")]
pub type AtomicU64 = std::sync::atomic::AtomicU64;

/// A value on its own 128-byte line (two cache lines, as crossbeam's
/// `CachePadded` on x86-64), so that neighbours do not share a line.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Types whose all-zero bytes are a valid value that processes may share.
///
/// # Safety
///
/// All-zero bytes must be a valid `T`, and `T` must hold no pointers, fds
/// or process-local state: only atomics (or words used only through them).
pub unsafe trait ZeroShared: Sync {}

// SAFETY: an atomic is valid at zero and holds no pointer.
unsafe impl ZeroShared for AtomicU32 {}
// SAFETY: as above.
unsafe impl ZeroShared for AtomicU64 {}
// SAFETY: padding adds zero bytes only.
unsafe impl<T: ZeroShared> ZeroShared for Padded<T> {}
// SAFETY: an array of valid-at-zero shareable values.
unsafe impl<T: ZeroShared, const N: usize> ZeroShared for [T; N] {}

/// A `T` in a `MAP_SHARED | MAP_ANONYMOUS` mapping: children forked later
/// see the same memory. Unmapped on drop (in each process separately).
#[derive(Debug)]
pub struct SharedMap<T> {
    ptr: NonNull<T>,
}

// SAFETY: the mapping is owned by this handle; T is Sync (ZeroShared, or
// `PthreadMutex`), so sharing `&T` between threads is sound.
unsafe impl<T: Sync> Send for SharedMap<T> {}
// SAFETY: as above; only `&T` is handed out.
unsafe impl<T: Sync> Sync for SharedMap<T> {}

impl<T: ZeroShared> SharedMap<T> {
    /// A zeroed `T` in a fresh shared mapping.
    ///
    /// # Errors
    ///
    /// If `mmap` fails.
    pub fn new() -> io::Result<Self> {
        // SAFETY: `ZeroShared` says all-zero bytes are a valid T.
        unsafe { Self::zeroed() }
    }
}

impl<T> SharedMap<T> {
    /// Maps zeroed memory for a `T` that is not [`ZeroShared`] (a C type
    /// initialised in place next, as [`PthreadMutex`](crate::peers::raw_sync::PthreadMutex)).
    ///
    /// # Safety
    ///
    /// All-zero bytes must be a valid `T`.
    pub(crate) unsafe fn zeroed() -> io::Result<Self> {
        const { assert!(align_of::<T>() <= 4096, "mappings are page-aligned") };
        let len = size_of::<T>().max(1);
        // SAFETY: an anonymous mapping at an address the kernel picks: it
        // overlaps nothing of ours. Fresh anonymous pages read as zero.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<T>()).expect("mmap never returns null on success");
        Ok(Self { ptr })
    }

    /// The raw pointer (for C APIs that take `*mut`).
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Deref for SharedMap<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mapping holds a valid T (zeroed, then initialised by
        // its constructor) and lives until `self` drops.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for SharedMap<T> {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range in `zeroed`; no reference
        // into it outlives `self`. A failure would only leak the mapping.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), size_of::<T>().max(1)) };
    }
}
