//! The raw peers of the sync benchmarks, written here so that they share
//! nothing with shm: futex wait/wake, a bare futex mutex (std's
//! algorithm), glibc's process-shared pthread mutex (plain and robust),
//! living in the harness's [`SharedMap`]s.
//!
//! Every futex here is shared between processes: no `FUTEX_PRIVATE_FLAG`,
//! as in shm's own locks (STYLE.md 3).
//!
//! # Memory ordering
//!
//! The mutexes take with Acquire and release with Release, pairing with
//! each other, so that what one holder wrote is visible to the next.
//! Everything else is Relaxed: a look before a compare-and-swap or a futex
//! call, which re-check the word themselves.

use std::cell::UnsafeCell;
use std::io;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use crate::harness::shared_map::{AtomicU32, SharedMap, ZeroShared};

/// Sleeps while `*word == expected`, at most `timeout`. Returns false on
/// timeout, true otherwise (woken, value changed, or a signal).
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos().min(999_999_999).cast_signed()),
    });
    let ts_ptr = ts.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: `word` is a live, aligned u32 for the whole call; the kernel
    // only reads it and `ts`. FUTEX_WAIT without the private flag: the
    // word may be shared with other processes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            ptr::null::<u32>(),
            0u32,
        )
    };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `n` sleepers on `word`, in any process.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not touch it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        );
    }
}

/// std's futex mutex (`library/std/src/sys/sync/mutex/futex.rs`) on a
/// shared futex: the floor for shm's `Lock`, which is the same algorithm
/// plus a pid in the word.
///
/// | `state` | meaning                          |
/// |---------|----------------------------------|
/// | 0       | unlocked                         |
/// | 1       | locked, nobody sleeps            |
/// | 2       | locked, someone may sleep        |
#[derive(Debug, Default)]
pub struct FutexMutex {
    state: AtomicU32,
}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

// SAFETY: one atomic; zero is "unlocked".
unsafe impl ZeroShared for FutexMutex {}

impl FutexMutex {
    /// Takes the lock.
    #[inline]
    pub fn lock(&self) {
        // Acquire: pairs with the Release swap in `unlock`.
        if self.state.compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed).is_err() {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut state = self.spin();
        if state == UNLOCKED {
            // Acquire: pairs with the Release swap in `unlock`.
            match self.state.compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed) {
                Ok(_) => return,
                Err(s) => state = s,
            }
        }
        loop {
            // Acquire: pairs with the Release swap in `unlock`. Taking it as
            // CONTENDED may cause one needless wake later, as in std.
            if state != CONTENDED && self.state.swap(CONTENDED, Acquire) == UNLOCKED {
                return;
            }
            futex_wait(&self.state, CONTENDED, None);
            state = self.spin();
        }
    }

    fn spin(&self) -> u32 {
        let mut spins = 100;
        loop {
            // Relaxed: a look; the take re-checks with Acquire.
            let state = self.state.load(Relaxed);
            if state != LOCKED || spins == 0 {
                return state;
            }
            core::hint::spin_loop();
            spins -= 1;
        }
    }

    /// Releases the lock.
    #[inline]
    pub fn unlock(&self) {
        // Release: pairs with the Acquire of the next take.
        if self.state.swap(UNLOCKED, Release) == CONTENDED {
            futex_wake(&self.state, 1);
        }
    }
}

/// A glibc `pthread_mutex_t` set up as `PTHREAD_PROCESS_SHARED` (and
/// optionally `PTHREAD_MUTEX_ROBUST`), living in a [`SharedMap`].
#[derive(Debug)]
pub struct PthreadMutex {
    m: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is made to be used concurrently
// through its API, from any thread of any process mapping it.
unsafe impl Sync for PthreadMutex {}

impl PthreadMutex {
    /// A process-shared mutex in a fresh shared mapping.
    ///
    /// # Errors
    ///
    /// If the mapping or an attribute call fails.
    pub fn shared(robust: bool) -> io::Result<SharedMap<Self>> {
        // SAFETY: zero bytes are glibc's PTHREAD_MUTEX_INITIALIZER; it is
        // initialised properly below before anyone locks it.
        let map = unsafe { SharedMap::<Self>::zeroed()? };
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(r))
            }
        };
        // SAFETY: `attr` is writable memory for an attribute object.
        check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        let attr = attr.as_mut_ptr();
        // SAFETY: `attr` was initialised above.
        check(unsafe { libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED) })?;
        if robust {
            // SAFETY: as above.
            check(unsafe { libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST) })?;
        }
        // SAFETY: the mutex lies in our fresh mapping, which nobody else
        // sees yet; `attr` is initialised.
        let r = check(unsafe { libc::pthread_mutex_init(map.m.get(), attr) });
        // SAFETY: `attr` is initialised and no longer needed.
        unsafe { libc::pthread_mutexattr_destroy(attr) };
        r.map(|()| map)
    }

    /// Takes the mutex.
    ///
    /// # Panics
    ///
    /// If glibc reports an error (or, robust, that a holder died: nobody
    /// dies in these benchmarks).
    #[inline]
    pub fn lock(&self) {
        // SAFETY: initialised in `shared`, the only way to get one.
        let r = unsafe { libc::pthread_mutex_lock(self.m.get()) };
        assert_eq!(r, 0, "pthread_mutex_lock");
    }

    /// Releases the mutex.
    ///
    /// # Panics
    ///
    /// If glibc reports an error.
    #[inline]
    pub fn unlock(&self) {
        // SAFETY: initialised in `shared`; the caller holds it.
        let r = unsafe { libc::pthread_mutex_unlock(self.m.get()) };
        debug_assert_eq!(r, 0, "pthread_mutex_unlock");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutexes_lock_and_unlock() {
        let f = SharedMap::<FutexMutex>::new().expect("map");
        f.lock();
        f.unlock();
        for robust in [false, true] {
            let p = PthreadMutex::shared(robust).expect("pthread mutex");
            p.lock();
            p.unlock();
        }
    }

    #[test]
    fn futex_wait_times_out_and_skips_on_change() {
        let w = AtomicU32::new(1);
        assert!(!futex_wait(&w, 1, Some(Duration::from_millis(1))));
        assert!(
            futex_wait(&w, 0, Some(Duration::from_millis(1))),
            "value differs: no sleep"
        );
    }
}
