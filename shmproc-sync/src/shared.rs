//! A synchronisation object's words in their own shared segment.

use std::fmt;

use shmproc_core::segment::Mapped;
use shmproc_core::{Segment, SegmentError, SegmentKind, SegmentObject, TypeIdentity};

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

impl<S: SharedState> SegmentObject for Shared<S> {
    fn identity() -> TypeIdentity {
        TypeIdentity::of::<S>(S::KIND)
    }

    /// Checks the header's type, and that the payload is exactly one `S`.
    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let map = Mapped::new(seg, &Self::identity())?;
        let len = map.segment().payload_len();
        if len != size_of::<S>() {
            return Err(SegmentError::BadPayload {
                len: len as u64,
                elem_size: size_of::<S>() as u64,
            });
        }
        Ok(Self { map })
    }

    fn segment(&self) -> &Segment {
        self.map.segment()
    }
}

// SAFETY: S is atomics only (SharedState) and `map` keeps the mapping
// alive; only shared references to S are handed out.
shmproc_core::segment_object!(unsafe Send + Sync, [S: SharedState] Shared<S>);

impl<S: SharedState> Shared<S> {
    /// A fresh, zeroed state in a new anonymous segment.
    pub(crate) fn create() -> Result<Self, SegmentError> {
        <Self as SegmentObject>::create(size_of::<S>())
    }

    /// A fresh, zeroed state in a new segment named `name`, which other
    /// processes (ours or not) may [`Shared::open`].
    pub(crate) fn create_named(name: &str) -> Result<Self, SegmentError> {
        Self::create_named_in(name, size_of::<S>())
    }

    /// The state in the segment named `name`: its header says it holds an
    /// `S` of this kind ([`SegmentError::TypeMismatch`] names both types
    /// otherwise) and its payload is exactly one `S`.
    pub(crate) fn open(name: &str) -> Result<Self, SegmentError> {
        Self::open_named(name)
    }

    /// The state.
    #[inline]
    pub(crate) fn get(&self) -> &S {
        // SAFETY: the payload holds exactly one S (checked in `attach`),
        // 128-aligned; S is atomics only, valid in any bit pattern and
        // meant to be shared; the mapping lives as long as `self.map`.
        unsafe { self.map.as_ptr().as_ref() }
    }
}

/// Every object by name, from an unrelated process (this test binary run
/// again), and a name opened as the wrong type.
/// `new`, `create_named` and `open` of a handle whose one field is
/// `shared: Shared<_>`: `what` is how the docs name a new one ("an unlocked
/// lock").
macro_rules! shared_constructors {
    ($T:ident, $what:literal) => {
        #[cfg(not(loom))]
        impl $T {
            #[doc = concat!("A new ", $what, " in its own shared segment.")]
            ///
            /// # Errors
            ///
            /// [`SegmentError`](shmproc_core::SegmentError) if the segment cannot be made.
            pub fn new() -> Result<Self, shmproc_core::SegmentError> {
                Ok(Self {
                    shared: $crate::shared::Shared::create()?,
                })
            }

            #[doc = concat!("A new ", $what, " in a segment named `name`, which any process may [`", stringify!($T), "::open`].")]
            ///
            /// # Errors
            ///
            /// [`SegmentError`](shmproc_core::SegmentError) if the name is taken or invalid.
            pub fn create_named(name: &str) -> Result<Self, shmproc_core::SegmentError> {
                Ok(Self {
                    shared: $crate::shared::Shared::create_named(name)?,
                })
            }

            #[doc = concat!("Opens the `", stringify!($T), "` named `name` (type and header checked).")]
            ///
            /// # Errors
            ///
            /// [`SegmentError`](shmproc_core::SegmentError) if there is none, or it holds another type.
            pub fn open(name: &str) -> Result<Self, shmproc_core::SegmentError> {
                Ok(Self {
                    shared: $crate::shared::Shared::open(name)?,
                })
            }
        }
    };
}
pub(crate) use shared_constructors;

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use crate::lock::tests::rerun;
    use crate::{Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value};

    fn names(base: &str) -> [String; 9] {
        [
            "lock", "rlock", "sem", "bsem", "cond", "event", "barrier", "value", "array",
        ]
        .map(|k| format!("{base}-{k}"))
    }

    /// In the re-run child only: opens every object by name and leaves a
    /// mark on each that the parent checks.
    #[test]
    fn child_opens_every_object_by_name() {
        let Ok(base) = std::env::var("SHM_SYNC_CHILD") else {
            return;
        };
        let [lock, rlock, sem, bsem, cond, event, barrier, value, array] = names(&base);
        drop(Lock::open(&lock).expect("lock").acquire().expect("free"));
        drop(RLock::open(&rlock).expect("rlock").acquire().expect("free"));
        Semaphore::open(&sem).expect("sem").acquire().forget();
        BoundedSemaphore::open(&bsem).expect("bsem").acquire().forget();
        let cond = Condition::open(&cond).expect("cond");
        assert_eq!(cond.acquire().expect("free").notify_all(), 0, "nobody waits");
        Value::<u64>::open(&value).expect("value").set(42);
        Array::<u32>::open(&array).expect("array").set(1, 7).expect("in range");
        Event::open(&event).expect("event").set();
        Barrier::open(&barrier)
            .expect("barrier")
            .wait_timeout(Duration::from_secs(60))
            .expect("the parent waits too");
    }

    #[test]
    #[cfg_attr(miri, ignore = "starts a process, opens named segments")]
    fn every_object_opens_by_name_in_an_unrelated_process() {
        let base = format!("shmproc-sync-test-named-{}", std::process::id());
        let n = names(&base);
        let lock = Lock::create_named(&n[0]).expect("lock");
        let rlock = RLock::create_named(&n[1]).expect("rlock");
        let sem = Semaphore::create_named(&n[2], 3).expect("sem");
        let bsem = BoundedSemaphore::create_named(&n[3], 2).expect("bsem");
        let cond = Condition::create_named(&n[4]).expect("cond");
        let event = Event::create_named(&n[5]).expect("event");
        let barrier = Barrier::create_named(&n[6], 2).expect("barrier");
        let value = Value::create_named(&n[7], 0u64).expect("value");
        let array = Array::<u32>::create_named(&n[8], 3).expect("array");
        let mut child = rerun("shared::tests::child_opens_every_object_by_name", &base);
        let met = barrier.wait_timeout(Duration::from_secs(60));
        let status = child.wait().expect("reap");
        let mut all = n.to_vec();
        all.extend([&n[4], &n[7], &n[8]].map(|x| format!("{x}.lock")));
        for name in &all {
            shmproc_core::Segment::unlink(name).expect("unlink");
        }
        assert!(status.success(), "the child failed: {status}");
        assert!(met.is_ok(), "the barrier: {met:?}");
        assert!(!lock.is_locked() && !rlock.is_owned() && cond.try_acquire().is_ok());
        assert_eq!((sem.value(), bsem.value()), (2, 1), "each gave a permit away");
        assert!(event.is_set());
        assert_eq!(value.get(), 42);
        assert_eq!(array.to_vec(), [0, 7, 0]);
    }

    #[test]
    #[cfg_attr(miri, ignore = "opens named segments")]
    fn opening_as_the_wrong_type_names_both() {
        let name = format!("shmproc-sync-test-wrongtype-{}", std::process::id());
        let _event = Event::create_named(&name).expect("event");
        let as_lock = Lock::open(&name).map(drop);
        let as_bounded = BoundedSemaphore::open(&name).map(drop);
        shmproc_core::Segment::unlink(&name).expect("unlink");
        let msg = as_lock.expect_err("an event is not a lock").to_string();
        assert!(msg.contains("RawLock") && msg.contains("RawEvent"), "{msg}");
        assert!(as_bounded.is_err());
        let name = format!("shmproc-sync-test-unbounded-{}", std::process::id());
        let _sem = Semaphore::create_named(&name, 1).expect("sem");
        let got = BoundedSemaphore::open(&name).map(drop);
        shmproc_core::Segment::unlink(&name).expect("unlink");
        let msg = got.expect_err("not bounded").to_string();
        assert!(
            msg.contains("BoundedSemaphore") && msg.contains("found Semaphore"),
            "{msg}"
        );
    }
}
