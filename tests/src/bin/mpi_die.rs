//! An MPI job in which rank 1 dies (abort) after a few puts while rank 0
//! waits for more: the launcher must end the job with an error, and
//! nothing may hang (the test in tests/mpi.rs bounds it).

use shmproc::mpi::World;

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let mut world = World::init()?;
    let q = world.queue::<u64>(0, 16)?;
    if world.rank() == 1 {
        for i in 0..10 {
            q.put(i)?;
        }
        eprintln!("rank 1 aborts now");
        std::process::abort();
    }
    if world.rank() == 0 {
        for _ in 0..1_000_000 {
            q.get()?;
        }
    }
    Ok(())
}
