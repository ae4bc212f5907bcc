//! Synchronisation primitives across real processes, under every start
//! method, including holders killed with SIGKILL at random points.

use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::Duration;

use shmproc::{
    AcquireTimeoutError, Barrier, BarrierError, Condition, ConditionError, Event, Lock, OwnerDied, Process, RLock,
    RawValue, Semaphore, StartMethod, TryAcquireError, Value,
};
use shmproc_tests::{
    HANG_GUARD, check, next_random, process_state, run_all, sleep_until_killed, wait_flag, wait_until,
};

type Result = shmproc_tests::TestResult;

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
        let _g = lock.acquire().expect("nobody dies in this test");
        counter.set(counter.get() + 1);
    }
}

/// The same with timed acquires.
fn acquire_timeout_increments((lock, counter, n): (Lock, RawValue<u64>, u64)) {
    for _ in 0..n {
        let _g = lock.acquire_timeout(HANG_GUARD).expect("nobody dies, nobody hangs");
        counter.set(counter.get() + 1);
    }
}

/// Holds the lock forever once `ready` is set.
fn hold_forever((lock, ready): (Lock, RawValue<u32>)) {
    let _g = lock.acquire().expect("first holder");
    ready.store(1, Release);
    sleep_until_killed();
}

/// Increments `counter` under the lock forever, marking `dirty` while the
/// two halves of an update are apart (until killed; gives up after the
/// hang guard).
fn churn((lock, counter, dirty): (Lock, RawValue<u64>, RawValue<u32>)) {
    let start = std::time::Instant::now();
    while start.elapsed() < HANG_GUARD {
        let g = lock.acquire().unwrap_or_else(|OwnerDied { .. }| {
            // Repair: the dead holder may have left `dirty` set.
            let g = lock.recover();
            dirty.set(0);
            g.mark_consistent();
            g
        });
        dirty.set(1);
        counter.set(counter.get() + 1);
        dirty.set(0);
        drop(g);
    }
    panic!("not killed within {HANG_GUARD:?}");
}

fn counts_exactly(m: StartMethod) -> Result {
    let lock = Lock::new()?;
    let counter = RawValue::new(0u64)?;
    let a = Process::new(locked_increments, (lock.clone(), counter.clone(), INCREMENTS)).with_start_method(m);
    let b = Process::new(acquire_timeout_increments, (lock.clone(), counter.clone(), INCREMENTS)).with_start_method(m);
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
        matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)),
        "held by a live child",
    )?;
    p.kill()?;
    check(p.join()? == -9, "killed")?;
    // Within a bounded time (the test's hang guard is generous).
    match lock.acquire_timeout(Duration::from_secs(30)) {
        Err(AcquireTimeoutError::OwnerDied(died)) => check(Some(died.pid) == p.pid(), "the dead holder's pid")?,
        other => return Err(format!("expected OwnerDied, got {other:?}").into()),
    }
    check(
        lock.is_inconsistent() && !lock.is_locked(),
        "not flagged inconsistent, or left held",
    )?;
    check(lock.acquire().is_err(), "every acquirer hears it until recovered")?;
    lock.recover().mark_consistent();
    check(lock.acquire().is_ok(), "clean afterwards")
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
    let got = lock.acquire_timeout(Duration::from_secs(30));
    check(
        matches!(got, Err(AcquireTimeoutError::OwnerDied(_))),
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
        next_random(&mut seed);
        // A random kill point, not an ordering: any point must pass.
        std::thread::sleep(Duration::from_micros(500 + seed % 5000));
        p.kill()?;
        p.join()?;
        let before = counter.get();
        let g = match lock.acquire_timeout(Duration::from_secs(30)) {
            Ok(g) => g,
            Err(AcquireTimeoutError::OwnerDied(_)) => {
                let g = lock.recover();
                dirty.set(0);
                g.mark_consistent();
                g
            }
            Err(AcquireTimeoutError::Timeout(_)) => return Err(format!("round {round}: survivor hung").into()),
        };
        check(dirty.get() == 0, "dirty after repair")?;
        counter.set(counter.get() + 1);
        drop(g);
        check(counter.get() == before + 1, "lost our own update")?;
    }
    Ok(())
}

fn wait_event((e, ready): (Event, RawValue<u32>)) -> std::result::Result<(), String> {
    ready.fetch_add(1, Release);
    if e.wait_timeout(Duration::from_secs(30)) {
        Ok(())
    } else {
        Err("not woken".into())
    }
}

fn event_wakes_every_waiting_process(m: StartMethod) -> Result {
    let e = Event::new()?;
    let ready = RawValue::new(0u32)?;
    let procs: Vec<Process> = (0..3)
        .map(|_| Process::new(wait_event, (e.clone(), ready.clone())).with_start_method(m))
        .collect();
    for p in &procs {
        p.start()?;
    }
    // A real wake, not a waiter that finds the flag already set: each child
    // has announced it is about to wait, one of them has asked `set` for a
    // wake (WAITERS in the word), and every child is asleep in the kernel
    // ('S': after its announcement the only sleeping call it makes is the
    // futex wait; preempted or spinning would read 'R').
    wait_until("3 waiters to announce themselves", || ready.load(Acquire) == 3);
    wait_until("a waiter to flag the event word", || e.has_waiters());
    let pids: Vec<u32> = procs.iter().filter_map(Process::pid).collect();
    check(pids.len() == 3, "every waiter has a pid")?;
    wait_until("every waiter to sleep in the kernel", || {
        pids.iter().all(|&p| process_state(p) == Some('S'))
    });
    check(!e.is_set(), "nobody set it yet")?;
    e.set();
    for p in &procs {
        check(p.join()? == 0, "a waiter was not woken")?;
    }
    e.clear();
    check(!e.is_set(), "clear")
}

fn limited((sem, active, most): (Semaphore, RawValue<u32>, RawValue<u32>)) {
    let permit = sem.acquire();
    let now = active.fetch_add(1, Acquire) + 1;
    most.atomic().fetch_max(now, Release);
    // Widens the overlap the check looks for; the check holds at any speed.
    std::thread::sleep(Duration::from_millis(5));
    active.fetch_sub(1, Release);
    drop(permit);
}

fn semaphore_limits_concurrency(m: StartMethod) -> Result {
    let sem = Semaphore::new(2)?;
    let (active, most) = (RawValue::new(0u32)?, RawValue::new(0u32)?);
    let procs: Vec<Process> = (0..6)
        .map(|_| Process::new(limited, (sem.clone(), active.clone(), most.clone())).with_start_method(m))
        .collect();
    run_all(&procs)?;
    check(
        (1..=2).contains(&most.get()),
        format!("{} at once under Semaphore(2)", most.get()),
    )?;
    check(sem.value() == 2, "permits lost")
}

fn rlock_child((r, step): (RLock, RawValue<u32>)) -> std::result::Result<(), String> {
    if !matches!(r.try_acquire(), Err(TryAcquireError::WouldBlock)) || r.is_owned() {
        return Err("took an RLock the parent holds".into());
    }
    step.store(1, Release);
    let a = r.acquire_timeout(Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let b = r.acquire().map_err(|e| e.to_string())?;
    if r.depth() != 2 {
        return Err(format!("depth {} after taking it twice", r.depth()));
    }
    drop((b, a));
    if r.depth() == 0 {
        Ok(())
    } else {
        Err("left held".into())
    }
}

fn rlock_belongs_to_one_thread_of_one_process(m: StartMethod) -> Result {
    let r = RLock::new()?;
    let step = RawValue::new(0u32)?;
    let g = r.acquire()?;
    let p = Process::new(rlock_child, (r.clone(), step.clone())).with_start_method(m);
    p.start()?;
    wait_flag(&step);
    drop(g);
    check(p.join()? == 0, "child saw wrong ownership")?;
    check(r.depth() == 0, "left held")
}

fn cond_waiter((cond, woken): (Condition, RawValue<u32>)) -> std::result::Result<(), String> {
    let mut g = cond.acquire().map_err(|e| e.to_string())?;
    let notified = g.wait_timeout(Duration::from_secs(60)).map_err(|e| e.to_string())?;
    woken.fetch_add(1, Release);
    drop(g);
    if notified { Ok(()) } else { Err("timed out".into()) }
}

fn condition_notify_n_wakes_exactly_n(m: StartMethod) -> Result {
    let cond = Condition::new()?;
    let woken = RawValue::new(0u32)?;
    let procs: Vec<Process> = (0..4)
        .map(|_| Process::new(cond_waiter, (cond.clone(), woken.clone())).with_start_method(m))
        .collect();
    for p in &procs {
        p.start()?;
    }
    wait_until("4 processes to wait on the condition", || cond.waiting() == 4);
    check(cond.acquire()?.notify(2) == 2, "notify(2)")?;
    wait_until("2 notified waiters to count themselves", || woken.load(Acquire) >= 2);
    // The other two can only leave by notification (their timeout is 60 s).
    check(
        cond.waiting() == 2 && woken.load(Acquire) == 2,
        "notify(2) woke more than two",
    )?;
    check(cond.acquire()?.notify_all() == 2, "notify_all")?;
    for p in &procs {
        check(p.join()? == 0, "a waiter was not notified")?;
    }
    Ok(())
}

/// The barrier's action: counts a round in its argument, a shared value
/// that travels with the barrier to every child, under every start method.
fn count_round(done: RawValue<u64>) {
    done.fetch_add(1, Release);
}

fn barrier_party((b, index_sum, rounds): (Barrier, RawValue<u64>, u64)) -> std::result::Result<(), String> {
    for _ in 0..rounds {
        let i = b.wait_timeout(Duration::from_secs(60)).map_err(|e| e.to_string())?;
        index_sum.fetch_add(u64::from(i), Release);
    }
    Ok(())
}

fn barrier_rounds(m: StartMethod) -> Result {
    let rounds = if std::env::var("SHM_STRESS").as_deref() == Ok("long") {
        10_000
    } else {
        1000
    };
    let done = RawValue::new(0u64)?;
    let b = Barrier::with_action(3, count_round, done.clone())?;
    let sum = RawValue::new(0u64)?;
    let procs: Vec<Process> = (0..3)
        .map(|_| Process::new(barrier_party, (b.clone(), sum.clone(), rounds)).with_start_method(m))
        .collect();
    run_all(&procs)?;
    check(
        done.get() == rounds,
        format!("the action ran {} times in {rounds} rounds", done.get()),
    )?;
    check(
        sum.get() == 3 * rounds,
        format!("indices not 0, 1, 2 each round: sum {}", sum.get()),
    )?;
    check(!b.broken(), "broken")
}

fn barrier_wait_once(b: Barrier) -> std::result::Result<(), String> {
    match b.wait() {
        Err(BarrierError::Broken) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn barrier_party_death_breaks_it(m: StartMethod) -> Result {
    let b = Barrier::new(3)?;
    let victim = Process::new(barrier_wait_once, b.clone()).with_start_method(m);
    let survivor = Process::new(barrier_wait_once, b.clone()).with_start_method(m);
    victim.start()?;
    survivor.start()?;
    wait_until("2 parties to wait at the barrier", || b.n_waiting() == 2);
    victim.kill()?;
    check(victim.join()? == -9, "killed")?;
    check(survivor.join()? == 0, "the survivor did not see the barrier broken")?;
    check(b.broken(), "not broken")?;
    b.reset();
    check(!b.broken(), "reset")
}

fn value_increments((v, n): (Value<u64>, u64)) {
    for _ in 0..n {
        v.update(|x| x + 1);
    }
}

fn value_with_lock_counts_exactly(m: StartMethod) -> Result {
    let v = Value::new(0u64)?;
    let procs: Vec<Process> = (0..2)
        .map(|_| Process::new(value_increments, (v.clone(), 50_000)).with_start_method(m))
        .collect();
    run_all(&procs)?;
    check(
        v.get() == 100_000,
        format!("2 x 50 000 locked increments gave {}", v.get()),
    )
}

fn notify_then_hold((cond, ready): (Condition, RawValue<u32>)) {
    let g = cond.acquire().expect("lock");
    g.notify_all();
    std::mem::forget(g);
    ready.store(1, Release);
    sleep_until_killed();
}

/// A waiter whose condition lock is held by a process that dies gets the
/// owner-died error, as a lock's acquirer does, and no longer holds the lock.
fn condition_lock_holder_death_is_reported(m: StartMethod) -> Result {
    let cond = Condition::new()?;
    let ready = RawValue::new(0u32)?;
    let mut g = cond.acquire()?;
    let p = Process::new(notify_then_hold, (cond.clone(), ready.clone())).with_start_method(m);
    p.start()?;
    let killer = {
        let (p, ready) = (p.clone(), ready.clone());
        std::thread::spawn(move || {
            wait_flag(&ready);
            p.kill()
        })
    };
    let got = g.wait_timeout(Duration::from_secs(60));
    killer.join().map_err(|_| "killer")??;
    check(
        matches!(got, Err(ConditionError::OwnerDied(OwnerDied { pid })) if Some(pid) == p.pid()),
        format!("wait gave {got:?}"),
    )?;
    drop(g);
    check(cond.acquire().is_err(), "the lock stays inconsistent until recovered")?;
    cond.recover().mark_consistent();
    check(cond.acquire().is_ok(), "usable again once recovered")?;
    check(p.join()? == -9, "killed")
}

shmproc_tests::trials! {
    per_method {
        lock_counts_exactly => counts_exactly,
        lock_dead_holder_is_taken_over => dead_holder_is_taken_over,
        lock_sigkill_at_random_points_never_hangs => sigkill_at_random_points_never_hangs,
        event_wakes_every_waiting_process,
        semaphore_limits_concurrency,
        rlock_belongs_to_one_thread_of_one_process,
        condition_notify_n_wakes_exactly_n,
        barrier_rounds,
        condition_lock_holder_death_is_reported,
        barrier_party_death_breaks_it,
        value_with_lock_counts_exactly,
    }
    once {
        lock_zombie_holder_is_taken_over => zombie_holder_is_taken_over,
    }
}
