//! S3: a user type with its own `run` (the Rust form of subclassing
//! Python's `Process`). Five of them each print their default name.

use serde::{Deserialize, Serialize};
use shmproc::prelude::*;

#[derive(Serialize, Deserialize)]
struct Greeter {
    number: u32,
}

impl Worker for Greeter {
    fn run(self) {
        let me = current_process();
        println!("Hello from {} (worker {}, pid {})", me.name(), self.number, me.pid());
    }
}

fn main() -> Result<(), shmproc::ProcessError> {
    shmproc::init();
    let workers: Vec<Process> = (0..5).map(|number| Process::from_worker(Greeter { number })).collect();
    for w in &workers {
        w.start()?;
    }
    for w in &workers {
        w.join()?;
    }
    Ok(())
}
