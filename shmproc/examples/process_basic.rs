//! S1: start 5 processes; each prints its number, its square and its pid;
//! the parent joins them all.
//!
//! Run: `cargo run --example process_basic` (add `SHM_START_METHOD=spawn`
//! or `fork` to try another start method).

use shmproc::prelude::*;

fn square(n: u64) {
    println!("child {n}: {n}^2 = {} (pid {})", n * n, std::process::id());
}

fn main() -> Result<(), shmproc::ProcessError> {
    shmproc::init();
    println!(
        "parent pid {} starting 5 children with {}",
        std::process::id(),
        shmproc::get_start_method()
    );
    let children: Vec<Process> = (0..5).map(|n| Process::new(square, n)).collect();
    for p in &children {
        p.start()?;
    }
    for p in &children {
        let code = p.join()?;
        println!("{} (pid {}) exited with {code}", p.name(), p.pid().expect("started"));
    }
    Ok(())
}
