//! S7: a pool of `cpu_count() * 2` workers whose initializer prints the
//! worker's name; then the same with `maxtasksperchild = 2`: workers are
//! replaced after 2 tasks, and the results are still complete and in order.
//!
//! Run: `cargo run --example pool_initializer`

use shmproc::prelude::*;

/// What each worker keeps between its tasks.
struct Me {
    name: String,
    tasks: u32,
}

/// Runs once in each worker; what it returns is the worker's state.
fn hello(greeting: String) -> Me {
    let me = shmproc::current_process();
    println!("{greeting} from {} (pid {})", me.name(), me.pid());
    Me {
        name: me.name().to_owned(),
        tasks: 0,
    }
}

/// A task that uses the worker's state: which worker ran `x`, and how many
/// tasks it had run before.
fn square_on(me: &mut Me, x: u64) -> (u64, String) {
    me.tasks += 1;
    (x * x, format!("{}#{}", me.name, me.tasks))
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let n = shmproc::cpu_count() * 2;
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
        let name = w.split('#').next().unwrap_or(w);
        *per_worker.entry(name).or_default() += 1;
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
