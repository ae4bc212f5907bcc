//! S13: two stage-2 processes wait on a `Condition`; a stage-1 process does
//! its work and calls `notify_all`. Both stage-2 processes run only after
//! stage 1 is done.

use shmproc::prelude::*;

fn stage_1((cond, done): (Condition, RawValue<u32>)) {
    println!("stage 1 working in {}", current_process().name());
    let guard = cond.acquire().expect("no holder dies here");
    done.set(1);
    println!("stage 1 done; notifying all");
    guard.notify_all();
}

fn stage_2((cond, done): (Condition, RawValue<u32>)) {
    let mut guard = cond.acquire().expect("no holder dies here");
    guard.wait_for(|| done.get() == 1).expect("no holder dies here");
    println!(
        "stage 2 running in {} after stage 1 (done = {})",
        current_process().name(),
        done.get()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let cond = Condition::new()?;
    let done = RawValue::new(0u32)?;
    let waiters: Vec<Process> = (0..2)
        .map(|_| Process::new(stage_2, (cond.clone(), done.clone())))
        .collect();
    for w in &waiters {
        w.start()?;
    }
    // Start stage 1 once both wait, so the notification has someone to wake
    // (wait_for would also cope with a late waiter).
    while cond.waiting() < 2 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let s1 = Process::new(stage_1, (cond.clone(), done.clone()));
    s1.start()?;
    s1.join()?;
    for w in &waiters {
        w.join()?;
    }
    Ok(())
}
