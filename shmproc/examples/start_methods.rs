//! S21: the same small program under the fork, spawn and forkserver
//! contexts gives identical results.

use std::sync::atomic::Ordering::Relaxed;

use shmproc::prelude::*;

fn fill_squares((slot, squares, total): (usize, RawArray<u64>, RawValue<u64>)) {
    let v = (slot as u64 + 1).pow(2);
    squares.set(slot, v).expect("slot < len");
    total.fetch_add(v, Relaxed);
}

fn run(method: StartMethod) -> Result<(Vec<u64>, u64), Box<dyn std::error::Error>> {
    let ctx = get_context(Some(method));
    let squares = RawArray::<u64>::new(4)?;
    let total = RawValue::new(0u64)?;
    let procs: Vec<Process> = (0..4)
        .map(|slot| ctx.process(fill_squares, (slot, squares.clone(), total.clone())))
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    Ok((squares.to_vec(), total.load(Relaxed)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        let (squares, total) = run(method)?;
        println!("{method}: squares {squares:?} total {total}");
    }
    Ok(())
}
