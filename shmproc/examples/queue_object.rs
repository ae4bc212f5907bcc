//! S9: the parent puts a user struct on a `Queue`; the child gets it and
//! calls a method that prints the child's process name.

use serde::{Deserialize, Serialize};
use shmproc::prelude::*;

#[derive(Serialize, Deserialize)]
struct CustomClass {
    name: String,
}

impl CustomClass {
    fn do_something(&self) {
        println!(
            "Doing something fancy in {} for {}!",
            current_process().name(),
            self.name
        );
    }
}

fn worker(q: Queue<CustomClass>) {
    let obj = q.get().expect("the parent puts one object");
    obj.do_something();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let q = Queue::new(0)?;
    let p = Process::new(worker, q.clone());
    p.start()?;
    q.put(CustomClass {
        name: "Fancy Dan".to_owned(),
    })?;
    p.join()?;
    println!("child exited with {:?}", p.exitcode());
    Ok(())
}
