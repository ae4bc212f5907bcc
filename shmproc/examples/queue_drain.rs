//! S19: a writer puts 1..=5 with pauses; a reader reads while the queue is
//! not empty; the parent drains the rest. Every item is read exactly once,
//! however the reads split between reader and parent.

use std::time::Duration;

use shmproc::TryRecvError;
use shmproc::prelude::*;

fn writer(q: Queue<u32>) {
    for i in 1..=5 {
        q.put(i).expect("room");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reader(q: Queue<u32>) {
    // The writer pauses, so the reader may well stop early.
    while !q.empty() {
        match q.try_get() {
            Ok(i) => println!("reader got {i}"),
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let q = Queue::new(0)?;
    let w = Process::new(writer, q.clone());
    w.start()?;
    std::thread::sleep(Duration::from_millis(75));
    let r = Process::new(reader, q.clone());
    r.start()?;
    w.join()?;
    r.join()?;
    loop {
        match q.try_get() {
            Ok(i) => println!("parent drained {i}"),
            Err(TryRecvError::Empty) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("queue empty: {}", q.empty());
    Ok(())
}
