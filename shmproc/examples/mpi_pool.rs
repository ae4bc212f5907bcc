//! `Pool.map` across the nodes of an MPI job: rank 0 maps; every node's
//! leader runs a local pool of 2 worker processes and serves the chunks
//! rank 0 sends it. Same program as `pool_map`, spread over hosts.
//!
//! Run: `cargo build --release -p shmproc --features mpi --example mpi_pool`
//! then `mpirun -np 2 target/release/examples/mpi_pool` (one rank per node
//! is enough; add `--host a,b` for two hosts, or set
//! `SHM_MPI_NODES=per-rank` to try it on one).

use std::time::{Duration, Instant};

use shmproc::mpi::World;

fn doubler(x: u64) -> u64 {
    x * 2
}

fn sleepy(x: u64) -> (u64, u32, String) {
    std::thread::sleep(Duration::from_millis(200));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (x, std::process::id(), host.trim().to_owned())
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let mut world = World::init()?;
    let pool = world.pool(2)?;
    if world.rank() == 0 {
        println!("{} ranks on {} nodes", world.size(), world.nodes());
        println!("doubled: {:?}", pool.map(doubler, [5, 10, 20])?);
        let squares = pool.map(doubler, 0..1000u64)?;
        assert_eq!(squares, (0..1000).map(doubler).collect::<Vec<_>>());
        let n = 4 * world.nodes() as u64;
        let t = Instant::now();
        let out = pool.map(sleepy, 0..n)?;
        let hosts: std::collections::BTreeSet<&str> = out.iter().map(|(_, _, h)| h.as_str()).collect();
        println!(
            "{n} tasks of 200 ms on {} workers in {:.1} s, on hosts {hosts:?}",
            2 * world.nodes(),
            t.elapsed().as_secs_f64()
        );
        assert!(out.iter().map(|r| r.0).eq(0..n), "results in input order");
    }
    drop(pool);
    Ok(())
}
