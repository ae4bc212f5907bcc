//! A queue across the ranks of an MPI job: rank 0 owns it; every other
//! rank puts 1000 numbered items, rank 0 takes them all and checks that
//! each rank's items came in order; then rank 0 puts one item per rank and
//! each takes one. Ranks on rank 0's node use shared memory; the others
//! MPI messages (`stats` says which).
//!
//! Run: `cargo build --release -p shmproc --features mpi --example mpi_queue`
//! then `mpirun -np 4 target/release/examples/mpi_queue`.
//! `SHM_MPI_NODES=per-rank` makes every rank a node of its own (all
//! traffic through MPI, for testing on one host).

use shmproc::mpi::World;

const ITEMS: u64 = 1000;

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let mut world = World::init()?;
    let (rank, size) = (world.rank(), world.size());
    let q = world.queue::<(usize, u64)>(0, 64)?;
    if rank == 0 {
        let mut next = vec![0u64; size];
        for _ in 0..ITEMS * (size as u64 - 1) {
            let (from, i) = q.get()?;
            assert_eq!(i, next[from], "rank {from}'s items out of order");
            next[from] += 1;
        }
        println!("rank 0 took {} items, each rank's in order", ITEMS * (size as u64 - 1));
    } else {
        for i in 0..ITEMS {
            q.put((rank, i))?;
        }
    }
    // The other way, once rank 0 has taken everything.
    world.barrier();
    if rank == 0 {
        for r in 1..size {
            q.put((r, 7))?;
        }
    } else {
        let (_, v) = q.get()?;
        assert_eq!(v, 7);
    }
    let s = q.stats();
    println!(
        "rank {rank} of {size}: node {} of {}, queue local {}, {} local ops, {} MPI ops",
        world.node(),
        world.nodes(),
        q.is_local(),
        s.local,
        s.remote
    );
    Ok(())
}
