//! S7: a pool of `cpu_count() * 2` workers whose initializer prints the
//! worker's name; then the same with `maxtasksperchild = 2`: workers are
//! replaced after 2 tasks, and the results are still complete and in order.
//!
//! Run: `cargo run --example pool_initializer`

use shm::prelude::*;

/// Runs once in each worker; its name becomes the worker's state.
fn hello(greeting: String) -> String {
    let me = shm::current_process();
    println!("{greeting} from {} (pid {})", me.name(), me.pid());
    me.name().to_owned()
}

/// A task that uses the worker's state: which worker ran `x`.
fn square_on(worker: &mut String, x: u64) -> (u64, String) {
    (x * x, worker.clone())
}

fn main() -> Result<(), shm::Error> {
    shm::init();
    let n = shm::cpu_count() * 2;
    let pool = Pool::builder()
        .processes(n)
        .initializer(hello, "initializer ran".to_owned())
        .build()?;
    let out = pool.map(square_on, 0..20)?;
    println!("squares: {:?}", out.iter().map(|r| r.0).collect::<Vec<_>>());
    pool.close();
    pool.join()?;

    let pool = Pool::builder()
        .processes(n)
        .maxtasksperchild(2)
        .initializer(hello, "replacement ran".to_owned())
        .build()?;
    let out = pool.map_chunked(square_on, 0..20, 1)?;
    let squares: Vec<u64> = out.iter().map(|r| r.0).collect();
    let mut per_worker = std::collections::BTreeMap::<&str, usize>::new();
    for (_, w) in &out {
        *per_worker.entry(w).or_default() += 1;
    }
    println!("squares with maxtasksperchild=2: {squares:?}");
    println!(
        "{} workers ran the 20 tasks, at most {} each",
        per_worker.len(),
        per_worker.values().max().copied().unwrap_or(0)
    );
    assert_eq!(squares, (0..20).map(|x| x * x).collect::<Vec<_>>());
    Ok(())
}
