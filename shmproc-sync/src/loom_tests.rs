//! Loom model checks of the lock, event and semaphore algorithms, run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmproc-sync --lib loom`.
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

/// A holder that releases the lock poisoned (its data half-updated, the
/// way `Lock` releases after taking it from a dead holder): a contender
/// either takes it before, cleanly, or after, and then hears `OwnerDied`,
/// whichever path (fast, spin, sleep) it is on; the holder's writes are
/// visible to it either way.
#[test]
fn loom_a_poisoned_release_is_heard() {
    loom::model(|| {
        let lock = Arc::new(RawLock::default());
        let data = Arc::new(UnsafeCell::new(0u32));
        let holder = {
            let (lock, data) = (Arc::clone(&lock), Arc::clone(&data));
            thread::spawn(move || {
                let me = Spin::thread_id();
                let first = lock.lock::<Spin>(me, None) == Some(Taken::Clean);
                // SAFETY: the lock is held: nobody else touches `data`.
                data.with_mut(|d| unsafe { *d += 1 });
                lock.unlock_poisoned::<Spin>();
                first
            })
        };
        let me = Spin::thread_id();
        let taken = lock.lock::<Spin>(me, None).expect("no deadline");
        // SAFETY: the lock is held: nobody else touches `data`.
        let seen = data.with_mut(|d| unsafe {
            *d += 1;
            *d
        });
        assert!(lock.unlock::<Spin>());
        let holder_first = holder.join().expect("thread");
        if taken == Taken::OwnerDied {
            assert!(holder_first && seen == 2, "poisoned only after the holder's update");
        } else {
            assert_eq!(seen, 1, "taken cleanly only before the holder");
        }
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

#[test]
fn loom_rlock_reenters_and_excludes() {
    use crate::rlock::RawRLock;
    loom::model(|| {
        let lock = Arc::new(RawRLock::default());
        let data = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, data) = (Arc::clone(&lock), Arc::clone(&data));
                thread::spawn(move || {
                    let me = Spin::thread_id();
                    assert!(lock.acquire::<Spin>(me, None).is_some());
                    assert!(lock.acquire::<Spin>(me, None).is_some(), "re-entry");
                    // SAFETY: the lock is held.
                    data.with_mut(|d| unsafe { *d += 1 });
                    lock.release::<Spin>(me).expect("level 2");
                    lock.release::<Spin>(me).expect("level 1");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        // SAFETY: every thread has finished.
        assert_eq!(data.with(|d| unsafe { *d }), 2);
    });
}

#[test]
fn loom_condition_notify_is_not_lost() {
    use crate::condition::RawCondition;
    use crate::rlock::RawRLock;
    loom::model(|| {
        let lock = Arc::new(RawRLock::default());
        let cond = Arc::new(*RawCondition::new_boxed());
        let ready = Arc::new(crate::sync::AtomicU32::new(0));
        let waiter = {
            let (lock, cond, ready) = (Arc::clone(&lock), Arc::clone(&cond), Arc::clone(&ready));
            thread::spawn(move || {
                let me = Spin::thread_id();
                lock.acquire::<Spin>(me, None).expect("no deadline");
                let ticket = cond.register(me).expect("room");
                ready.store(1, crate::sync::Ordering::Release);
                let depth = lock.release_all::<Spin>(me).expect("held");
                let slept = cond.sleep::<Spin>(ticket, None);
                lock.reacquire::<Spin>(me, depth);
                let notified = cond.finish(ticket);
                lock.release::<Spin>(me).expect("held");
                assert!(slept && notified);
            })
        };
        let me = Spin::thread_id();
        loop {
            lock.acquire::<Spin>(me, None).expect("no deadline");
            if ready.load(crate::sync::Ordering::Acquire) == 1 {
                break;
            }
            lock.release::<Spin>(me).expect("held");
            thread::yield_now();
        }
        assert_eq!(cond.notify::<Spin>(1), 1);
        lock.release::<Spin>(me).expect("held");
        waiter.join().expect("thread");
    });
}

#[test]
fn loom_barrier_releases_all_with_distinct_indices() {
    use crate::barrier::RawBarrier;
    loom::model(|| {
        let b = Arc::new(*RawBarrier::new_boxed(2));
        let other = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.wait::<Spin>(Spin::thread_id(), None, None).expect("not broken"))
        };
        let mine = b.wait::<Spin>(Spin::thread_id(), None, None).expect("not broken");
        let theirs = other.join().expect("thread");
        assert_eq!(mine + theirs, 1, "indices 0 and 1");
    });
}
