//! S22: a daemonic child that would run forever dies with its parent, even
//! when the parent is killed with SIGKILL; and a daemon cannot start
//! children (a clear error).
//!
//! Run with `kill` as the argument to have the parent SIGKILL itself instead
//! of returning from `main`, and with `thread` (or `thread-kill`) to start
//! the daemon from a thread that ends before the parent does. Under the fork
//! start method that start is refused: while the thread runs this process
//! has two threads, and a fork child of a multi-threaded process may
//! deadlock, so fork asks for spawn or forkserver instead.

use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use shmproc::prelude::*;

fn grandchild(_: ()) {}

fn forever(ready: RawValue<u32>) {
    match Process::new(grandchild, ()).start() {
        Ok(()) => println!("daemon started a child (unexpected)"),
        Err(e) => println!("daemon cannot start a child: {e}"),
    }
    // Release: pairs with the parent's Acquire; our output happened before.
    ready.store(1, Release);
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let ready = RawValue::new(0u32)?;
    let p = Process::new(forever, ready.clone()).with_daemon(true);
    if mode.starts_with("thread") {
        // The starting thread ends at once: the daemon must outlive it.
        let q = p.clone();
        match std::thread::spawn(move || q.start()).join().expect("starter thread") {
            Ok(()) => {}
            Err(e @ shmproc::ProcessError::ForkWithThreads { .. }) => {
                println!("start refused: {e}");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        p.start()?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Acquire: pairs with the daemon's Release.
    while ready.load(Acquire) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("daemon pid {}", p.pid().unwrap_or(0));
    println!("parent exits; daemon alive: {}", p.is_alive());
    if mode.ends_with("kill") {
        println!("parent kills itself with SIGKILL");
        shmproc::sys::kill_pid(std::process::id(), 9);
        std::thread::sleep(Duration::from_secs(30));
    }
    Ok(())
}
