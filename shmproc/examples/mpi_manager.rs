//! Manager containers across the ranks of an MPI job: a dict of counters
//! that every rank increments atomically (`d[k] += 1` from every node loses
//! nothing), a list every rank appends to, a namespace, and an instance of
//! a user type served by a manager process on rank 0. Ranks on rank 0's
//! node use them in place in shared memory; the others through rank 0.
//!
//! Run: `cargo build --release -p shmproc --features mpi --example mpi_manager`
//! then `mpirun -np 3 target/release/examples/mpi_manager` (set
//! `SHM_MPI_NODES=per-rank` to make every rank a node of its own).

use serde::{Deserialize, Serialize};
use shmproc::mpi::World;
use shmproc::{Manager, StartMethod};

#[derive(Serialize, Deserialize)]
struct Tally {
    hits: u64,
}

impl Tally {
    fn hit(&mut self, n: u64) -> u64 {
        self.hits += n;
        self.hits
    }
}

shmproc::served! {
    impl Tally as TallyHandle {
        attrs { hits: u64 }
        fn hit(&mut self, n: u64) -> u64;
    }
}

/// `d[k] += 1`, run under the dict's lock (on the owner, for a rank of
/// another node).
fn bump(v: &mut Option<u64>) -> u64 {
    let n = v.unwrap_or(0) + 1;
    *v = Some(n);
    n
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let mut world = World::init()?;
    let (rank, size) = (world.rank(), world.size());
    // Rank 0's manager process, started through the fork server (which
    // started before MPI, so the manager never inherits MPI's state).
    let manager = if rank == 0 {
        Some(
            Manager::builder()
                .register::<Tally>()
                .start_method(StartMethod::ForkServer)
                .start()?,
        )
    } else {
        None
    };
    let counts = world.dict::<String, u64>(0)?;
    let seen = world.list::<u64>(0)?;
    let ns = world.namespace(0)?;
    let tally = world.proxy(0, || {
        manager
            .as_ref()
            .expect("rank 0 has the manager")
            .create(Tally { hits: 0 })
    })?;

    if rank == 0 {
        ns.set("greeting", "hello from rank 0")?;
    }
    for _ in 0..100 {
        counts.modify(&"hits".to_owned(), bump)?;
    }
    counts.set(&format!("rank {rank}"), &(rank as u64))?;
    seen.push(&(rank as u64))?;
    tally.call::<_, u64>("hit", (10u64,))?;
    world.barrier();

    let greeting: String = ns.get("greeting")?;
    println!(
        "rank {rank}: read {greeting:?}; dict local {}, list local {}, proxy local {}; dict ops {:?}",
        counts.is_local(),
        seen.is_local(),
        tally.is_local(),
        counts.stats()
    );
    if rank == 0 {
        let hits = counts.get(&"hits".to_owned())?.unwrap_or(0);
        let mut ranks = seen.to_vec()?;
        ranks.sort_unstable();
        let tallied: u64 = tally.getattr("hits")?;
        println!("hits {hits} of {}", 100 * size);
        println!("ranks seen {ranks:?}");
        println!("tally {tallied} of {}", 10 * size);
        println!("keys {}", counts.len()?);
        assert_eq!(hits, 100 * size as u64, "no increment lost");
        assert_eq!(tallied, 10 * size as u64);
    }
    world.barrier();
    Ok(())
}
