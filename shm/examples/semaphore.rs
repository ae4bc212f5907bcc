//! S14: ten workers share a `Semaphore(3)` and a shared list of the names
//! of the active workers, guarded by a `Lock`. Never more than three are
//! active at once.

use std::time::Duration;

use shm::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Shared {
    sem: Semaphore,
    lock: Lock,
    /// Active worker numbers (0: free slot).
    active: RawArray<u32>,
    most: RawValue<u32>,
}

fn worker((n, s): (u32, Shared)) {
    let _permit = s.sem.acquire();
    {
        let _g = s.lock.acquire().expect("no holder dies here");
        let free = (0..s.active.len())
            .find(|&i| s.active.get(i) == Some(0))
            .expect("10 slots for 10 workers");
        s.active.set(free, n).expect("in range");
        let names: Vec<String> = s
            .active
            .to_vec()
            .iter()
            .filter(|&&a| a != 0)
            .map(|a| format!("Process-{a}"))
            .collect();
        let count = u32::try_from(names.len()).expect("at most 10");
        s.most.set(s.most.get().max(count));
        println!("active: {names:?}");
    }
    std::thread::sleep(Duration::from_millis(20));
    {
        let _g = s.lock.acquire().expect("no holder dies here");
        let mine = (0..s.active.len())
            .find(|&i| s.active.get(i) == Some(n))
            .expect("we are listed");
        s.active.set(mine, 0).expect("in range");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shm::init();
    let (sem, lock, active, most) = (
        Semaphore::new(3)?,
        Lock::new()?,
        RawArray::<u32>::new(10)?,
        RawValue::new(0u32)?,
    );
    let procs: Vec<Process> = (1..=10)
        .map(|n| {
            let s = Shared {
                sem: sem.clone(),
                lock: lock.clone(),
                active: active.clone(),
                most: most.clone(),
            };
            Process::new(worker, (n, s))
        })
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("most active at once: {}", most.get());
    Ok(())
}
