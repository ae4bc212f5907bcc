//! S6: a pool of 4 maps a function that sleeps 1 s over [1, 2, 3, 4] in
//! about 1 s, not 4 (each task on its own worker); a pool of 3 maps doubling
//! over [5, 10, 20]; and `apply_async(doubler, (25,)).get_timeout(1 s)` is 50.
//!
//! Run: `cargo run --example pool_map`

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shmproc::prelude::*;

/// Sleeps a second; says which worker ran it.
fn sleepy(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_secs(1));
    (x, std::process::id())
}

fn doubler(x: u64) -> u64 {
    x * 2
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let t = Instant::now();
    let slept = Pool::new(4)?.map(sleepy, [1, 2, 3, 4])?;
    let secs = t.elapsed().as_secs_f64();
    let workers: HashSet<u32> = slept.iter().map(|&(_, pid)| pid).collect();
    let values: Vec<u64> = slept.iter().map(|&(x, _)| x).collect();
    println!("slept {values:?} in {secs:.2} s on {} workers", workers.len());

    let pool = Pool::new(3)?;
    let doubled = pool.map(doubler, [5, 10, 20])?;
    println!("doubled: {doubled:?}");
    let fifty = pool.apply_async(doubler, (25,))?.get_timeout(Duration::from_secs(1))?;
    println!("apply_async(doubler, (25,)): {fifty}");
    pool.close();
    pool.join()?;
    Ok(())
}
