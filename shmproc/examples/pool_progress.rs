//! A progress bar over `Pool::imap`: the iterator knows its length from the
//! input, and the bar moves task by task as results come in order.
//!
//! Run: `cargo run --example pool_progress`

use indicatif::{ProgressBar, ProgressStyle};
use shmproc::prelude::*;

/// Some CPU work: the n-th prime, the slow way.
fn nth_prime(n: u64) -> u64 {
    let mut found = 0;
    let mut k = 1;
    while found < n {
        k += 1;
        if (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0) {
            found += 1;
        }
    }
    k
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let pool = Pool::new(shmproc::cpu_count())?;
    let results = pool.imap(nth_prime, 1..=3000)?;
    let bar = ProgressBar::new(results.size_hint().0 as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks ({per_sec}, eta {eta})").expect("a valid template"),
    );
    let mut last = 0;
    for r in results {
        last = r?;
        bar.inc(1);
    }
    bar.finish();
    println!("the 3000th prime is {last}; {} tasks finished", pool.finished());
    Ok(())
}
