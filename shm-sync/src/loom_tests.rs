//! Loom model checks of the lock, event and semaphore algorithms, run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shm-sync --lib loom`.
//! The algorithms run on heap memory with loom's atomics; waiting yields.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use crate::event::RawEvent;
use crate::lock::{RawLock, Taken};
use crate::park::{Park, Spin};
use crate::semaphore::RawSemaphore;

#[test]
fn loom_lock_excludes() {
    loom::model(|| {
        let lock = Arc::new(RawLock::default());
        let data = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, data) = (Arc::clone(&lock), Arc::clone(&data));
                thread::spawn(move || {
                    let me = Spin::thread_id();
                    assert_eq!(lock.lock::<Spin>(me, None), Some(Taken::Clean));
                    // SAFETY: the lock is held: nobody else touches `data`.
                    data.with_mut(|d| unsafe { *d += 1 });
                    assert!(lock.unlock::<Spin>());
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        // SAFETY: every thread has finished.
        assert_eq!(data.with(|d| unsafe { *d }), 2);
        assert_eq!(lock.holder(), 0);
    });
}

#[test]
fn loom_event_set_is_seen() {
    loom::model(|| {
        let ev = Arc::new(RawEvent::default());
        let data = Arc::new(UnsafeCell::new(0u32));
        let setter = {
            let (ev, data) = (Arc::clone(&ev), Arc::clone(&data));
            thread::spawn(move || {
                // SAFETY: written before `set`, read only after `wait` saw it.
                data.with_mut(|d| unsafe { *d = 7 });
                ev.set::<Spin>();
            })
        };
        assert!(ev.wait::<Spin>(None));
        // SAFETY: the Release/Acquire pair of set/wait orders the write.
        assert_eq!(data.with(|d| unsafe { *d }), 7);
        setter.join().expect("thread");
    });
}

#[test]
fn loom_semaphore_permits() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::default());
        sem.init(1, true);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let sem = Arc::clone(&sem);
                thread::spawn(move || {
                    assert!(sem.acquire::<Spin>(None));
                    sem.release::<Spin>(1).expect("within the bound");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(sem.value(), 1);
    });
}
