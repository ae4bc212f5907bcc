//! Requests no queue or pool of this library sends, from rank 1 to rank 0:
//! for a queue that does not exist, with an unknown tag, a pool's request
//! to a queue and a queue's to a pool. Each must come back as a clear
//! refusal, and the job must end normally. Then a remote queue used after
//! the World is dropped: a clear error, never a hang.

use shmproc::mpi::{MpiError, World};

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let mut world = World::init()?;
    let q = world.queue::<u64>(0, 4)?;
    let pool = world.pool(1)?;
    if world.rank() == 1 {
        match world.__raw_request(0, 6, 0) {
            Err(MpiError::Refused { why, .. }) => println!("chunk to a queue: {why}"),
            other => println!("chunk to a queue: unexpected {other:?}"),
        }
        match world.__raw_request(0, 2, 1) {
            Err(MpiError::Refused { why, .. }) => println!("get from a pool: {why}"),
            other => println!("get from a pool: unexpected {other:?}"),
        }
        match world.__raw_request(0, 2, 999) {
            Err(MpiError::Refused { why, .. }) => println!("unknown queue: {why}"),
            other => println!("unknown queue: unexpected {other:?}"),
        }
        match world.__raw_request(0, 77, 0) {
            Err(MpiError::Refused { why, .. }) => println!("unknown tag: {why}"),
            other => println!("unknown tag: unexpected {other:?}"),
        }
    }
    drop(pool);
    // Used after the World is gone (every rank dropped it): a clear error
    // from the queue, never a hang.
    let on_other_node = !q.is_local();
    let rank = world.rank();
    drop(world);
    if rank == 1 && on_other_node {
        match q.put(7) {
            Err(e) => println!("put after the World: {e}"),
            Ok(()) => println!("put after the World: unexpected Ok"),
        }
        match q.get() {
            Err(e) => println!("get after the World: {e}"),
            Ok(v) => println!("get after the World: unexpected {v}"),
        }
    }
    drop(q);
    Ok(())
}
