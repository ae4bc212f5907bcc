//! A producer-consumer pipeline across processes over shared-memory rings.
//!
//! 1. Throughput: a producer process streams stamped messages through an
//!    SPSC ring to the parent, which checks order and completeness.
//! 2. Latency: an echo process answers requests over a duplex channel
//!    (a request and its answer cross on one cache line); the parent times
//!    each round trip and prints percentiles.
//!
//! Run: `cargo run --release -p shmproc --example pipeline [messages]`

use std::time::Instant;

use shmproc::duplex::{self, Duplex};
use shmproc::prelude::*;
use shmproc::spsc::{self, Producer};
use shmproc::{RecvError, TryRecvError, TrySendError};

/// A message: sequence number, send time (monotonic ns), payload.
type Msg = [u64; 3];

fn produce((mut out, n): (Producer<Msg>, u64)) -> Result<(), String> {
    let mut batch = Vec::with_capacity(64);
    let mut seq = 0;
    while seq < n {
        batch.clear();
        let now = shmproc::sys::monotonic_ns();
        batch.extend((seq..n.min(seq + 64)).map(|s| [s, now, s * 3]));
        let mut sent = 0;
        while sent < batch.len() {
            sent += match out.try_send_slice(&batch[sent..]) {
                Ok(n) => n,
                Err(TrySendError::Full(())) => 0,
                Err(e) => return Err(e.to_string()),
            };
        }
        seq += batch.len() as u64;
    }
    out.close();
    Ok(())
}

fn echo(mut end: Duplex<u64, u64>) -> Result<(), String> {
    loop {
        match end.recv() {
            Ok(i) => end.send(i + 1).map_err(|e| e.to_string())?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);

    // 1. Throughput.
    let (tx, mut rx) = spsc::channel::<Msg>(4096)?;
    let producer = Process::new(produce, (tx, n));
    let start = Instant::now();
    producer.start()?;
    let (mut expect, mut buf) = (0u64, vec![[0u64; 3]; 256]);
    loop {
        let got = match rx.try_recv_slice(&mut buf) {
            Ok(n) => n,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => 0,
            Err(e) => return Err(e.into()),
        };
        if got == 0 {
            match rx.recv() {
                Ok(m) => {
                    buf[0] = m;
                    check(&buf[..1], &mut expect)?;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        check(&buf[..got], &mut expect)?;
    }
    let secs = start.elapsed().as_secs_f64();
    producer.join()?;
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = expect as f64 / secs / 1e6;
    println!(
        "throughput: {expect} of {n} messages in order, {rate:.1} M messages/s ({:.0} ms)",
        secs * 1e3
    );

    // 2. Latency.
    let (mut me, peer) = duplex::channel::<u64, u64>(64)?;
    let echo_process = Process::new(echo, peer);
    echo_process.start()?;
    let trips = 100_000usize;
    let mut rtt = Vec::with_capacity(trips);
    for i in 0..trips as u64 {
        let t = shmproc::sys::monotonic_ns();
        me.send(i).map_err(|e| e.to_string())?;
        let j = me.recv()?;
        if j != i + 1 {
            return Err(format!("answer {j} to {i}").into());
        }
        rtt.push(shmproc::sys::monotonic_ns() - t);
    }
    me.close();
    echo_process.join()?;
    rtt.sort_unstable();
    let pct = |p: usize| rtt[(rtt.len() - 1) * p / 100];
    println!(
        "round trip over a duplex channel: p50 {} ns, p90 {} ns, p99 {} ns ({trips} trips)",
        pct(50),
        pct(90),
        pct(99)
    );
    Ok(())
}

/// Checks that `msgs` continue the sequence at `expect` with intact payloads.
fn check(msgs: &[Msg], expect: &mut u64) -> Result<(), String> {
    for &[seq, _, x] in msgs {
        if seq != *expect || x != seq * 3 {
            return Err(format!("message {seq} out of order or damaged (expected {expect})"));
        }
        *expect += 1;
    }
    Ok(())
}
