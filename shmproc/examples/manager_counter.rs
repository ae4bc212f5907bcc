//! S23: three processes increment a manager `Value` under a manager `Lock`;
//! then the same with a dict entry changed in one step (`Dict::modify`),
//! which needs no lock of its own.
//!
//! Run: `cargo run --example manager_counter`

use shmproc::prelude::*;

fn bump((counter, lock): (Value<u64>, Lock)) -> Result<(), shmproc::Error> {
    let _g = lock.acquire()?;
    counter.set(counter.get() + 1);
    Ok(())
}

fn bump_entry(d: Dict<String, u64>) -> Result<(), shmproc::Error> {
    for _ in 0..1000 {
        d.modify(&"n".to_owned(), |v| *v.get_or_insert(0) += 1)?;
    }
    Ok(())
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let manager = Manager::new()?;
    let counter = manager.value(0u64)?;
    let lock = manager.lock()?;
    let procs: Vec<Process> = (0..3)
        .map(|_| Process::new(bump, (counter.clone(), lock.clone())))
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("counter: {}", counter.get());

    let d = manager.dict::<String, u64>()?;
    let procs: Vec<Process> = (0..3).map(|_| Process::new(bump_entry, d.clone())).collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("dict entry: {}", d.get_item(&"n".to_owned())?);
    Ok(())
}
