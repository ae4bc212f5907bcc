//! Requests no queue of this library sends, from rank 1 to rank 0: one for
//! a queue that does not exist, one with an unknown tag. Each must come
//! back as a clear refusal, and the job must end normally.

use shm::mpi::{MpiError, World};

fn main() -> Result<(), shm::Error> {
    shm::init();
    let world = World::init()?;
    if world.rank() == 1 {
        match world.__raw_request(0, 2, 999) {
            Err(MpiError::Refused { why, .. }) => println!("unknown queue: {why}"),
            other => println!("unknown queue: unexpected {other:?}"),
        }
        match world.__raw_request(0, 77, 0) {
            Err(MpiError::Refused { why, .. }) => println!("unknown tag: {why}"),
            other => println!("unknown tag: unexpected {other:?}"),
        }
    }
    Ok(())
}
