//! The SPSC ring across real processes, under every start method: order,
//! no loss, no duplicate, and dead peers reported instead of hangs.

use std::sync::atomic::Ordering::Release;
use std::time::Duration;

use shmproc::mpmc::{self, Mpmc};
use shmproc::spsc::{self, Consumer, Producer};
use shmproc::{Fault, RecvError, RecvTimeoutError, SendError};
use shmproc::{Process, RawValue, StartMethod};
use shmproc_tests::{check, next_random, wait_flag};

type Result = shmproc_tests::TestResult;

fn produce((mut tx, n): (Producer<u64>, u64)) -> std::result::Result<(), String> {
    for i in 0..n {
        tx.send(i).map_err(|e| e.to_string())?;
    }
    tx.close();
    Ok(())
}

fn consume((mut rx, n): (Consumer<u64>, u64)) -> std::result::Result<(), String> {
    for i in 0..n {
        let v = rx.recv().map_err(|e| e.to_string())?;
        if v != i {
            return Err(format!("got {v}, expected {i}"));
        }
    }
    match rx.recv() {
        Err(RecvError::Disconnected) => Ok(()),
        other => Err(format!("after the last message: {other:?}")),
    }
}

fn produce_forever(mut tx: Producer<u64>) {
    let mut i = 0u64;
    loop {
        if tx.send(i).is_err() {
            return;
        }
        i += 1;
    }
}

fn consume_a_few((mut rx, ready): (Consumer<u64>, RawValue<u32>)) {
    for _ in 0..3 {
        let _ = rx.recv();
    }
    ready.store(1, Release);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

const N: u64 = 200_000;

fn child_produces_in_order(m: StartMethod) -> Result {
    let (tx, rx) = spsc::channel::<u64>(1024)?;
    let p = Process::new(produce, (tx, N)).with_start_method(m);
    p.start()?;
    let got = consume((rx, N));
    check(p.join()? == 0, "producer failed")?;
    check(got.is_ok(), format!("{got:?}"))
}

fn child_consumes_in_order(m: StartMethod) -> Result {
    let (tx, rx) = spsc::channel::<u64>(64)?;
    let p = Process::new(consume, (rx, N)).with_start_method(m);
    p.start()?;
    produce((tx, N))?;
    check(p.join()? == 0, "consumer saw a gap, a duplicate or no end")
}

fn killed_producer_loses_nothing_published(m: StartMethod) -> Result {
    let (tx, mut rx) = spsc::channel::<u64>(256)?;
    let p = Process::new(produce_forever, tx).with_start_method(m);
    p.start()?;
    let mut next = 0u64;
    while next < 10_000 {
        let v = rx.recv()?;
        check(v == next, format!("got {v}, expected {next}"))?;
        next += 1;
    }
    p.kill()?;
    check(p.join()? == -9, "killed")?;
    // Everything it published is still delivered, in order, then the end.
    loop {
        match rx.recv() {
            Ok(v) => {
                check(v == next, format!("got {v}, expected {next}"))?;
                next += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(format!("after the producer died: {e}").into()),
        }
    }
    Ok(())
}

fn blocked_push_sees_a_dead_consumer(m: StartMethod) -> Result {
    let (mut tx, rx) = spsc::channel::<u64>(4)?;
    let ready = RawValue::new(0u32)?;
    let p = Process::new(consume_a_few, (rx, ready.clone())).with_start_method(m);
    p.start()?;
    for i in 0..3 {
        tx.send(i).map_err(|e| e.to_string())?;
    }
    wait_flag(&ready);
    for i in 0..4 {
        tx.send(i).map_err(|e| e.to_string())?;
    }
    p.kill()?;
    let pushed = tx.send(99);
    check(
        matches!(&pushed, Err(SendError::Disconnected(99))),
        format!("push into a ring whose consumer died: {pushed:?}"),
    )?;
    check(p.join()? == -9, "killed")
}

fn mpmc_produce_forever((mut q, id): (Mpmc<u64>, u64)) {
    let mut i = 0u64;
    loop {
        if q.put(id << 32 | i).is_err() {
            return;
        }
        i += 1;
    }
}

/// Producers killed at random points: every message a producer pushed
/// arrives exactly once, in order per producer, and the one it was writing
/// when killed never arrives half-written; nothing hangs.
fn mpmc_killed_producers_lose_and_duplicate_nothing(m: StartMethod) -> Result {
    let mut q = mpmc::ring::<u64>(64)?;
    let mut next = [0u64; 3];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let procs: Vec<Process> = (0..3u64)
        .map(|id| Process::new(mpmc_produce_forever, (q.clone(), id)).with_start_method(m))
        .collect();
    for p in &procs {
        p.start()?;
    }
    let take = |next: &mut [u64; 3], v: u64| -> Result {
        let (id, i) = ((v >> 32) as usize, v & 0xffff_ffff);
        check(
            id < 3 && next[id] == i,
            format!(
                "producer {id}: got {i}, expected {}",
                next.get(id).copied().unwrap_or(0)
            ),
        )?;
        next[id] += 1;
        Ok(())
    };
    for victim in &procs {
        for _ in 0..5_000 {
            let v = q.get_timeout(Duration::from_secs(30))?;
            take(&mut next, v)?;
        }
        next_random(&mut seed);
        std::thread::sleep(Duration::from_micros(seed % 2000));
        victim.kill()?;
        check(victim.join()? == -9, "killed")?;
    }
    // Drain: whatever was published arrives; tombstones are skipped.
    loop {
        match q.get_timeout(Duration::from_millis(500)) {
            Ok(v) => take(&mut next, v)?,
            Err(RecvTimeoutError::Timeout(_)) => break,
            Err(e) => return Err(e.to_string().into()),
        }
    }
    drop(procs);
    // The ring is whole again: a new producer's messages go through.
    q.try_put(7 << 32).map_err(|e| e.to_string())?;
    check(
        q.get_timeout(Duration::from_secs(30))? == 7 << 32,
        "ring wedged after the kills",
    )
}

fn mpmc_consume_forever((mut q, seen): (Mpmc<u64>, RawValue<u64>)) {
    while let Ok(v) = q.get() {
        // Relaxed: a tally the parent reads after this process is gone.
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = v;
    }
}

/// Consumers killed at random points never wedge the ring: the producer
/// keeps pushing (the dead consumer's slot is recycled), and the messages
/// are all accounted for: taken by a consumer (living or dead) or still in
/// the ring, never twice.
fn mpmc_killed_consumers_never_wedge_it(m: StartMethod) -> Result {
    let mut q = mpmc::ring::<u64>(8)?;
    let tally = RawValue::new(0u64)?;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut pushed = 0u64;
    for round in 0..3 {
        let c = Process::new(mpmc_consume_forever, (q.clone(), tally.clone())).with_start_method(m);
        c.start()?;
        for _ in 0..2_000 {
            q.put_timeout(pushed, Duration::from_secs(30))
                .map_err(|e| format!("round {round}: {e}"))?;
            pushed += 1;
        }
        next_random(&mut seed);
        std::thread::sleep(Duration::from_micros(seed % 1000));
        c.kill()?;
        check(c.join()? == -9, "killed")?;
    }
    // With no consumer left, fill the ring: it must take a full ring's worth
    // (slots a dead consumer held are recycled), then report full.
    let mut filled = 0;
    while q.put_timeout(u64::MAX, Duration::from_millis(300)).is_ok() {
        filled += 1;
        check(filled <= q.capacity(), "more room than slots")?;
    }
    check(
        q.len() == q.capacity(),
        format!("only {} of {} slots usable: one is wedged", q.len(), q.capacity()),
    )?;
    let in_ring = q.len() as u64;
    // Each consumer may take one message and die before counting it.
    let counted = tally.get();
    check(
        counted + in_ring - filled as u64 <= pushed && counted + in_ring - filled as u64 + 3 >= pushed,
        format!("pushed {pushed}, counted {counted}, left {}", in_ring - filled as u64),
    )
}

/// A third process scribbles on an MPMC ring: slot 0's sequence word set
/// far ahead (100 in a ring of 4), as in issue 9. The ring's header is 384
/// bytes and a slot's words 16, sequence first (`mpmc`'s layout).
fn mpmc_scribble_slot0(q: Mpmc<u64>) -> std::result::Result<(), String> {
    let (bytes, fds) = shmproc::handle::encode(&q).map_err(|e| e.to_string())?;
    let fds = fds
        .into_iter()
        // SAFETY: the descriptors belong to `q`'s segment, alive here.
        .map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let seg: shmproc::Segment = shmproc::handle::decode(&bytes, fds).map_err(|e| e.to_string())?;
    if seg.payload_len() <= 400 {
        return Err("payload too small".into());
    }
    // SAFETY: inside the payload, 4-aligned (the payload is 128-aligned);
    // every access to the ring's words is atomic.
    #[allow(clippy::disallowed_types, reason = "a scribble from outside the library")]
    let word = unsafe { core::sync::atomic::AtomicU32::from_ptr(seg.payload().as_ptr().wrapping_add(384).cast()) };
    word.store(100, Release);
    Ok(())
}

/// Every operation of the scribbled ring, from another process: each
/// returns the corruption, none spins.
fn mpmc_ops_report_corruption(mut q: Mpmc<u64>) -> std::result::Result<(), String> {
    let t = Duration::from_millis(50);
    let results: [std::result::Result<u64, Option<Fault>>; 6] = [
        q.try_get().map_err(|e| match e {
            shmproc::TryRecvError::Fault(f) => Some(f),
            _ => None,
        }),
        q.get_timeout(t).map_err(|e| match e {
            RecvTimeoutError::Fault(f) => Some(f),
            _ => None,
        }),
        q.get().map_err(|e| match e {
            RecvError::Fault(f) => Some(f),
            _ => None,
        }),
        q.try_put(1).map(|()| 0).map_err(|e| e.fault().cloned()),
        q.put_timeout(1, t).map(|()| 0).map_err(|e| e.fault().cloned()),
        q.put(1).map(|()| 0).map_err(|e| e.fault().cloned()),
    ];
    for (i, r) in results.iter().enumerate() {
        if !matches!(r, Err(Some(Fault::Corrupted { .. }))) {
            return Err(format!("op {i}: {r:?}"));
        }
    }
    Ok(())
}

/// Issue 9: an MPMC ring whose sequence word a third process scribbled
/// makes every operation of a fourth process return `Corrupted` within a
/// bound, instead of spinning forever.
fn mpmc_scribbled_sequence_is_reported_across_processes(m: StartMethod) -> Result {
    let q = mpmc::ring::<u64>(4)?;
    let scribbler = Process::new(mpmc_scribble_slot0, q.clone()).with_start_method(m);
    scribbler.start()?;
    check(
        scribbler.join_timeout(Duration::from_secs(60))? == Some(0),
        "the scribbler failed or hung",
    )?;
    let user = Process::new(mpmc_ops_report_corruption, q).with_start_method(m);
    user.start()?;
    let code = user.join_timeout(Duration::from_secs(60))?;
    if code.is_none() {
        user.kill()?;
        return Err("hung: an operation on the scribbled ring did not return within 60 s".into());
    }
    check(code == Some(0), "an operation did not report the corruption")
}

shmproc_tests::trials! {
    per_method {
        spsc_child_produces_in_order => child_produces_in_order,
        spsc_child_consumes_in_order => child_consumes_in_order,
        spsc_killed_producer_loses_nothing_published => killed_producer_loses_nothing_published,
        spsc_blocked_push_sees_a_dead_consumer => blocked_push_sees_a_dead_consumer,
        mpmc_killed_producers_lose_and_duplicate_nothing,
        mpmc_killed_consumers_never_wedge_it,
        mpmc_scribbled_sequence_is_reported_across_processes,
    }
}
