//! S12: five processes each add 1 to a shared counter 1000 times under one
//! `Lock`; some hold a guard, some call `acquire` and `release` as Python
//! code does, some retry `try_acquire`. The
//! total is exactly 5000. Then the same without the lock, to show the
//! updates it loses.

use shmproc::prelude::*;

fn with_guard((lock, counter): (Lock, RawValue<u64>)) {
    for _ in 0..1000 {
        let _guard = lock.acquire().expect("no holder dies here");
        counter.set(counter.get() + 1);
    }
}

/// Python's explicit style: `acquire()`, the update, `release()`.
fn with_acquire_release((lock, counter): (Lock, RawValue<u64>)) -> Result<(), shmproc::Error> {
    for _ in 0..1000 {
        let held = lock.acquire()?;
        counter.set(counter.get() + 1);
        held.release();
    }
    Ok(())
}

fn with_try_acquire((lock, counter): (Lock, RawValue<u64>)) {
    for _ in 0..1000 {
        let _guard = loop {
            match lock.try_acquire() {
                Ok(guard) => break guard,
                Err(shmproc::TryAcquireError::WouldBlock) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        counter.set(counter.get() + 1);
    }
}

fn without_lock((counter, go): (RawValue<u64>, RawValue<u32>)) {
    // Start together, so the two really race.
    go.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    while go.load(std::sync::atomic::Ordering::Acquire) < 2 {
        std::hint::spin_loop();
    }
    for _ in 0..100_000 {
        counter.set(counter.get() + 1);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let lock = Lock::new()?;
    let counter = RawValue::new(0u64)?;
    let procs: Vec<Process> = (0..5)
        .map(|i| {
            let args = (lock.clone(), counter.clone());
            match i % 3 {
                0 => Process::new(with_guard, args),
                1 => Process::new(with_acquire_release, args),
                _ => Process::new(with_try_acquire, args),
            }
        })
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("counter = {}", counter.get());

    let (racy, go) = (RawValue::new(0u64)?, RawValue::new(0u32)?);
    let procs: Vec<Process> = (0..2)
        .map(|_| Process::new(without_lock, (racy.clone(), go.clone())))
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!(
        "without the lock, 2 x 100000 increments: counter = {} ({} updates lost)",
        racy.get(),
        200_000 - racy.get()
    );
    Ok(())
}
