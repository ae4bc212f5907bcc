//! The main demo: a parallel computation over shared memory.
//!
//! A `RawArray<f64>` of 8 million samples lives in one shared segment. One
//! worker per CPU is started under each start method; every worker reads its
//! own slice in place (nothing is copied to it) and writes its partial sum
//! into a shared results array. The parent prints the total, the speed-up,
//! and what starting the workers cost.
//!
//! Run: `cargo run --release -p shmproc --example demo`

use std::time::Instant;

use shmproc::prelude::*;

const N: usize = 8 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct Slice {
    data: RawArray<f64>,
    sums: RawArray<f64>,
    worker: usize,
    workers: usize,
}

fn sum_slice(s: Slice) {
    let len = s.data.len();
    let (start, end) = (s.worker * len / s.workers, (s.worker + 1) * len / s.workers);
    let mut acc = 0.0;
    for i in start..end {
        let x = s.data.get(i).expect("in range");
        acc += (x * x).sqrt().sin().abs();
    }
    s.sums.set(s.worker, acc).expect("one slot per worker");
}

fn run(
    method: StartMethod,
    data: &RawArray<f64>,
    workers: usize,
) -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let ctx = get_context(Some(method));
    let sums = RawArray::<f64>::new(workers)?;
    let t0 = Instant::now();
    let procs: Vec<Process> = (0..workers)
        .map(|worker| {
            ctx.process(
                sum_slice,
                Slice {
                    data: data.clone(),
                    sums: sums.clone(),
                    worker,
                    workers,
                },
            )
        })
        .collect();
    for p in &procs {
        p.start()?;
    }
    let started = t0.elapsed().as_secs_f64();
    for p in &procs {
        p.join()?;
    }
    let total = t0.elapsed().as_secs_f64();
    Ok((sums.to_vec().iter().sum(), started, total))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let workers = shmproc::cpu_count();
    #[allow(clippy::cast_precision_loss, reason = "sample values, not counts")]
    let samples: Vec<f64> = (0..N).map(|i| i as f64 * 1e-3).collect();
    let data = RawArray::from_slice(&samples)?;
    println!(
        "{N} samples in one shared segment ({} MiB), {workers} workers",
        (N * 8) >> 20
    );

    let t0 = Instant::now();
    let whole = Slice {
        data: data.clone(),
        sums: RawArray::new(1)?,
        worker: 0,
        workers: 1,
    };
    let sums = whole.sums.clone();
    sum_slice(whole);
    let serial = t0.elapsed().as_secs_f64();
    println!(
        "serial in this process: sum {:.6} in {:.1} ms",
        sums.get(0).unwrap_or(0.0),
        serial * 1e3
    );

    for method in [StartMethod::Fork, StartMethod::ForkServer, StartMethod::Spawn] {
        let (sum, started, total) = run(method, &data, workers)?;
        println!(
            "{method:>10}: sum {sum:.6} in {:.1} ms ({:.2}x serial); starting {workers} workers took {:.2} ms",
            total * 1e3,
            serial / total,
            started * 1e3
        );
    }
    Ok(())
}
