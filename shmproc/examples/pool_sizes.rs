//! Times the same CPU-bound map over pool sizes 1, 2, 4, 8 and 13 and prints
//! seconds per size: past the number of cores, more processes stop helping.
//!
//! Run: `cargo run --release --example pool_sizes` (`-- quick` for a short
//! run).

use std::time::Instant;

use shmproc::prelude::*;

/// About a millisecond of arithmetic (in a release build).
fn work((seed, rounds): (u64, u32)) -> u64 {
    let mut x = seed;
    for _ in 0..rounds {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let quick = std::env::args().any(|a| a == "quick");
    let (count, rounds) = if quick { (40, 20_000) } else { (400, 1_000_000) };
    let items: Vec<(u64, u32)> = (0..count).map(|x| (x, rounds)).collect();
    let t = Instant::now();
    let expected: Vec<u64> = items.iter().map(|&x| work(x)).collect();
    println!(
        "{} CPUs; sequential: {:.3} s",
        shmproc::cpu_count(),
        t.elapsed().as_secs_f64()
    );
    println!("| processes | seconds |");
    println!("|---:|---:|");
    for n in [1, 2, 4, 8, 13] {
        let pool = Pool::new(n)?;
        let t = Instant::now();
        let got = pool.map(work, items.iter().copied())?;
        println!("| {n} | {:.3} |", t.elapsed().as_secs_f64());
        assert_eq!(got, expected);
    }
    Ok(())
}
