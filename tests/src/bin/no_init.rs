//! A program that forgets `shmproc::init()`: starting a child with spawn must
//! end in a clear error in the parent (and the child), never in a hang or a
//! fork bomb; forkserver refuses to start at all.

use shmproc::prelude::*;

fn child(_: ()) {
    println!("the child ran its target (it should not have)");
}

fn main() {
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(StartMethod::Spawn);
    println!("main running in pid {}", std::process::id());
    let p = Process::new(child, ()).with_start_method(method);
    if let Err(e) = p.start() {
        println!("start failed: {e}");
        std::process::exit(3);
    }
    match p.join() {
        Ok(code) => println!("joined with {code}"),
        Err(e) => println!("join failed: {e}"),
    }
}
