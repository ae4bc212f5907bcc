//! S14: ten workers share a `Semaphore(3)` and a manager list of the names
//! of the active workers, guarded by a `Lock`. Never more than three are
//! active at once.

use std::time::Duration;

use shmproc::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Shared {
    sem: Semaphore,
    lock: Lock,
    /// Names of the active workers.
    active: List<String>,
    most: RawValue<u32>,
}

fn worker(s: Shared) -> Result<(), shmproc::Error> {
    let me = shmproc::current_process().name().to_owned();
    let _permit = s.sem.acquire();
    {
        let _g = s.lock.acquire()?;
        s.active.push(&me)?;
        let names = s.active.to_vec()?;
        let count = u32::try_from(names.len()).expect("at most 10");
        s.most.set(s.most.get().max(count));
        println!("active: {names:?}");
    }
    std::thread::sleep(Duration::from_millis(20));
    {
        let _g = s.lock.acquire()?;
        s.active.remove(&me)?;
    }
    Ok(())
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let manager = Manager::new()?;
    let (sem, lock, active, most) = (
        manager.semaphore(3)?,
        manager.lock()?,
        manager.list::<String>()?,
        RawValue::new(0u32)?,
    );
    let procs: Vec<Process> = (1..=10)
        .map(|_| {
            let s = Shared {
                sem: sem.clone(),
                lock: lock.clone(),
                active: active.clone(),
                most: most.clone(),
            };
            Process::new(worker, s)
        })
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("most active at once: {}", most.get());
    println!("active at the end: {:?}", active.to_vec()?);
    Ok(())
}
