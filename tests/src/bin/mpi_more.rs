//! The rest of the MPI surface, across real ranks: a joinable queue that
//! every rank puts to, takes from, marks done and joins; and a pool's
//! `imap` over an endless input, `imap_unordered`, `starmap`,
//! `apply_async`, `map_async`, a task that panics and a worker that dies
//! inside a node's pool (only that task fails). Prints one line per check;
//! the test in tests/mpi.rs reads them.

use std::collections::BTreeSet;
use std::time::Duration;

use shmproc::mpi::World;

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn host_of(_: u64) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn fragile(x: u64) -> u64 {
    if x == 7 {
        panic!("seven is not allowed");
    }
    if x == 13 {
        // SIGABRT: the worker dies inside the task; its pool replaces it.
        std::process::abort();
    }
    x
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let mut world = World::init()?;
    let (rank, size) = (world.rank(), world.size());

    // A joinable queue owned by rank 0: ranks 1.. put 50 items each; then
    // every rank takes its share and marks each done; rank 0 and the last
    // rank join.
    let q = world.joinable_queue::<u64>(0, 16)?;
    let total = 50 * (size as u64 - 1);
    let share = |r: usize| total / size as u64 + u64::from((r as u64) < total % size as u64);
    std::thread::scope(|s| -> Result<(), shmproc::Error> {
        // Producers and consumers at once, so a bound of 16 never stalls.
        let producer = s.spawn(|| -> Result<(), shmproc::mpi::MpiError> {
            if rank > 0 {
                for i in 0..50 {
                    q.put(rank as u64 * 1000 + i)?;
                }
            }
            Ok(())
        });
        for _ in 0..share(rank) {
            q.get()?;
            q.task_done()?;
        }
        producer.join().expect("the producer thread")?;
        Ok(())
    })?;
    world.barrier();
    if rank == 0 || rank == size - 1 {
        let done = q.join_timeout(Duration::from_secs(60))?;
        println!("rank {rank}: joined {done}, queue local {}", q.is_local());
    }
    world.barrier();
    if rank == size - 1 {
        let refused = q.task_done().is_err();
        println!("rank {rank}: one task_done too many refused {refused}");
    }

    // Messages larger than the engine's posted receive (4 KiB) travel as a
    // header and a body: a 100 KB value each way.
    let big = world.dict::<u64, String>(0)?;
    if rank == size - 1 {
        big.set(&1, &"x".repeat(100_000))?;
    }
    world.barrier();
    if rank == size - 1 {
        let back = big.get(&1)?.map_or(0, |v| v.len());
        println!("rank {rank}: big value back {back}");
    }
    world.barrier();

    let pool = world.pool(2)?;
    if rank == 0 {
        let first: Vec<u64> = pool.imap(square, 0u64..)?.take(100).collect::<Result<_, _>>()?;
        println!(
            "imap endless take(100) in order {}",
            first == (0..100).map(square).collect::<Vec<_>>()
        );
        let it = pool.imap_unordered_chunked(square, 0..1000u64, 10)?;
        let len = it.size_hint();
        let got: BTreeSet<u64> = it.collect::<Result<_, _>>()?;
        println!(
            "imap_unordered len {len:?} all {}",
            got == (0..1000).map(square).collect::<BTreeSet<_>>()
        );
        let sums = pool.starmap(add, (0..100u64).map(|i| (i, 1)))?;
        println!("starmap {}", sums == (1..101).collect::<Vec<_>>());
        let many = pool.map(square, 0..100_000u64)?;
        println!("big map {}", many.iter().copied().eq((0..100_000u64).map(square)));
        let one = pool.apply_async(add, (40u64, 2u64))?;
        println!("apply_async {}", one.get_timeout(Duration::from_secs(60))?);
        let all = pool.map_async(square, 0..10u64)?;
        println!("map_async {:?}", all.get()?);
        let hosts: BTreeSet<String> = pool.map(host_of, 0..(8 * world.nodes() as u64))?.into_iter().collect();
        println!("hosts {}", hosts.len());
        let out: Vec<_> = pool.imap(fragile, 0..20u64)?.collect();
        let failed: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        println!("fragile failed {failed:?}");
        for i in failed {
            println!(
                "fragile {i}: {}",
                out[i].as_ref().err().map(ToString::to_string).unwrap_or_default()
            );
        }
        println!("fragile others {}", out.iter().filter(|r| r.is_ok()).count());
    }
    drop(pool);
    Ok(())
}
