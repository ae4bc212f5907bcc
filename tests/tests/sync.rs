//! Synchronisation primitives across real processes, under every start
//! method, including holders killed with SIGKILL at random points.

use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::Duration;

use libtest_mimic::Trial;
use shm::{Lock, Process, RawValue, StartMethod, TryLockError};
use shm_tests::{METHODS, check, run_trials};

type Result = shm_tests::TestResult;

const INCREMENTS: u64 = 100_000;

fn rounds(n: usize) -> usize {
    if std::env::var("SHM_STRESS").as_deref() == Ok("long") {
        n * 10
    } else {
        n
    }
}

/// Increments a plain (non-atomic) shared counter under the lock.
fn locked_increments((lock, counter, n): (Lock, RawValue<u64>, u64)) {
    for _ in 0..n {
        let _g = lock.lock().expect("nobody dies in this test");
        counter.set(counter.get() + 1);
    }
}

/// The same with Python's explicit acquire/release.
fn acquire_release_increments((lock, counter, n): (Lock, RawValue<u64>, u64)) {
    for _ in 0..n {
        assert_eq!(lock.acquire(true, None).ok(), Some(true));
        counter.set(counter.get() + 1);
        lock.release().expect("held");
    }
}

/// Holds the lock forever once `ready` is set.
fn hold_forever((lock, ready): (Lock, RawValue<u32>)) {
    let _g = lock.lock().expect("first holder");
    ready.store(1, Release);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Increments `counter` under the lock forever, marking `dirty` while the
/// two halves of an update are apart.
fn churn((lock, counter, dirty): (Lock, RawValue<u64>, RawValue<u32>)) {
    loop {
        let g = match lock.lock() {
            Ok(g) => g,
            Err(died) => {
                // Repair: the dead holder may have left `dirty` set.
                dirty.set(0);
                lock.mark_consistent();
                died.into_guard()
            }
        };
        dirty.set(1);
        counter.set(counter.get() + 1);
        dirty.set(0);
        drop(g);
    }
}

fn wait_flag(flag: &RawValue<u32>) {
    for _ in 0..120_000 {
        // Acquire: pairs with the child's Release.
        if flag.load(Acquire) == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn counts_exactly(m: StartMethod) -> Result {
    let lock = Lock::new()?;
    let counter = RawValue::new(0u64)?;
    let a = Process::new(locked_increments, (lock.clone(), counter.clone(), INCREMENTS)).with_start_method(m);
    let b = Process::new(acquire_release_increments, (lock.clone(), counter.clone(), INCREMENTS)).with_start_method(m);
    a.start()?;
    b.start()?;
    check(a.join()? == 0 && b.join()? == 0, "a child failed")?;
    check(
        counter.get() == 2 * INCREMENTS,
        format!("2 x {INCREMENTS} locked increments gave {}", counter.get()),
    )?;
    check(!lock.is_locked(), "left locked")
}

fn dead_holder_is_taken_over(m: StartMethod) -> Result {
    let lock = Lock::new()?;
    let ready = RawValue::new(0u32)?;
    let p = Process::new(hold_forever, (lock.clone(), ready.clone())).with_start_method(m);
    p.start()?;
    wait_flag(&ready);
    check(lock.holder() == p.pid(), "the child holds the lock")?;
    check(
        matches!(lock.try_lock(), Err(TryLockError::WouldBlock)),
        "held by a live child",
    )?;
    p.kill()?;
    check(p.join()? == -9, "killed")?;
    // Within a bounded time (the test's hang guard is generous).
    match lock.lock_timeout(Duration::from_secs(30)) {
        Err(TryLockError::OwnerDied(died)) => drop(died.into_guard()),
        other => return Err(format!("expected OwnerDied, got {other:?}").into()),
    }
    check(lock.is_inconsistent(), "not flagged inconsistent")?;
    lock.mark_consistent();
    check(lock.lock().is_ok(), "clean afterwards")
}

/// A zombie holder (dead, not yet reaped by its parent) counts as dead.
fn zombie_holder_is_taken_over() -> Result {
    let lock = Lock::new()?;
    let ready = RawValue::new(0u32)?;
    let p = Process::new(hold_forever, (lock.clone(), ready.clone())).with_start_method(StartMethod::Fork);
    p.start()?;
    wait_flag(&ready);
    p.kill()?;
    // Not joined: the child stays a zombie while we wait for its lock.
    let got = lock.lock_timeout(Duration::from_secs(30));
    check(
        matches!(got, Err(TryLockError::OwnerDied(_))),
        format!("zombie holder: {got:?}"),
    )?;
    drop(got);
    check(p.join()? == -9, "killed")
}

fn sigkill_at_random_points_never_hangs(m: StartMethod) -> Result {
    let lock = Lock::new()?;
    let counter = RawValue::new(0u64)?;
    let dirty = RawValue::new(0u32)?;
    let mut seed = 0x853c_49e6_748f_ea9b_u64;
    for round in 0..rounds(8) {
        let p = Process::new(churn, (lock.clone(), counter.clone(), dirty.clone())).with_start_method(m);
        p.start()?;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(500 + seed % 5000));
        p.kill()?;
        p.join()?;
        let before = counter.get();
        let g = match lock.lock_timeout(Duration::from_secs(30)) {
            Ok(g) => g,
            Err(TryLockError::OwnerDied(died)) => {
                dirty.set(0);
                lock.mark_consistent();
                died.into_guard()
            }
            Err(TryLockError::WouldBlock) => return Err(format!("round {round}: survivor hung").into()),
        };
        check(dirty.get() == 0, "dirty after repair")?;
        counter.set(counter.get() + 1);
        drop(g);
        check(counter.get() == before + 1, "lost our own update")?;
    }
    Ok(())
}

fn main() {
    shm::init();
    let mut tests = Vec::new();
    for m in METHODS {
        tests.push(Trial::test(format!("lock_counts_exactly_{m}"), move || {
            counts_exactly(m)
        }));
        tests.push(Trial::test(format!("lock_dead_holder_is_taken_over_{m}"), move || {
            dead_holder_is_taken_over(m)
        }));
        tests.push(Trial::test(
            format!("lock_sigkill_at_random_points_never_hangs_{m}"),
            move || sigkill_at_random_points_never_hangs(m),
        ));
    }
    tests.push(Trial::test(
        "lock_zombie_holder_is_taken_over",
        zombie_holder_is_taken_over,
    ));
    run_trials(tests);
}
