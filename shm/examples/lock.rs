//! S12: five processes each add 1 to a shared counter 1000 times under one
//! `Lock`; some use the guard, some Python's explicit acquire/release. The
//! total is exactly 5000.

use shm::prelude::*;

fn with_guard((lock, counter): (Lock, RawValue<u64>)) {
    for _ in 0..1000 {
        let _guard = lock.lock().expect("no holder dies here");
        counter.set(counter.get() + 1);
    }
}

fn with_acquire_release((lock, counter): (Lock, RawValue<u64>)) {
    for _ in 0..1000 {
        lock.acquire(true, None).expect("no holder dies here");
        counter.set(counter.get() + 1);
        lock.release().expect("we hold it");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shm::init();
    let lock = Lock::new()?;
    let counter = RawValue::new(0u64)?;
    let procs: Vec<Process> = (0..5)
        .map(|i| {
            let target = if i % 2 == 0 { with_guard } else { with_acquire_release };
            Process::new(target, (lock.clone(), counter.clone()))
        })
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("counter = {}", counter.get());
    Ok(())
}
