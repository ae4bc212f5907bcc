//! S8: the same Pool interface backed by threads (Python's
//! `multiprocessing.dummy`): one function written over `PoolApi` gives the
//! same results on processes and on threads; a thread pool also takes
//! closures that capture.
//!
//! Run: `cargo run --example thread_pool`

use shmproc::prelude::*;

fn cube(x: u64) -> u64 {
    x * x * x
}

/// Written once, for either pool.
fn report(pool: &impl PoolApi<State = ()>) -> Result<(Vec<u64>, u64), PoolError> {
    let cubes = pool.map(cube, 0..10)?;
    let mut total = 0;
    for r in pool.imap_unordered(cube, 0..100)? {
        total += r?;
    }
    Ok((cubes, total))
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let processes = Pool::new(2)?;
    let threads = ThreadPool::new(2)?;
    let (p_cubes, p_total) = report(&processes)?;
    let (t_cubes, t_total) = report(&threads)?;
    println!("processes: {p_cubes:?}, total {p_total}");
    println!("threads:   {t_cubes:?}, total {t_total}");
    println!("same results: {}", p_cubes == t_cubes && p_total == t_total);
    // Only threads take a closure that captures.
    let scale = 10;
    let scaled = threads.map(move |x: u64| x * scale, 0..5)?;
    println!("scaled on threads: {scaled:?}");
    Ok(())
}
