//! `Queue`, `JoinableQueue` and `Pipe` across real processes, under every
//! start method: order, no loss, no duplicate, messages larger than the
//! ring, and processes killed (SIGKILL) at random points while they put or get.

#![allow(clippy::cast_possible_truncation, reason = "test byte patterns")]

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use serde::{Deserialize, Serialize};
use shm::{Connection, Pipe, PipeError, Process, Queue, QueueError, RawArray, RawValue, StartMethod};
use shm_tests::{METHODS, check, next_random, run_trials, wait_flag};

type Result = shm_tests::TestResult;

/// A message: who sent it, its number, and (every so often) a body larger
/// than half the ring, so that it is streamed in parts.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Msg {
    from: u32,
    seq: u64,
    body: Vec<u8>,
}

/// A small ring: 4 KiB, so a 10 KB body is streamed in several parts.
const RING: usize = 4096;

fn body_for(from: u32, seq: u64) -> Vec<u8> {
    if seq % 16 == 5 {
        (0..10_000u64).map(|j| (j ^ seq ^ u64::from(from)) as u8).collect()
    } else {
        Vec::new()
    }
}

fn msg(from: u32, seq: u64) -> Msg {
    Msg {
        from,
        seq,
        body: body_for(from, seq),
    }
}

fn put_n((q, from, n): (Queue<Msg>, u32, u64)) {
    for seq in 0..n {
        q.put(msg(from, seq)).expect("the parent gets");
    }
}

fn put_forever((q, from): (Queue<Msg>, u32)) {
    for seq in 0.. {
        if q.put(msg(from, seq)).is_err() {
            return;
        }
    }
}

/// Checks that `m` is intact and the next of its sender.
fn take(next: &mut [u64], m: &Msg) -> Result {
    let from = m.from as usize;
    check(from < next.len(), format!("unknown sender {from}"))?;
    check(
        m.seq == next[from],
        format!("sender {from}: got {}, expected {}", m.seq, next[from]),
    )?;
    check(
        m.body == body_for(m.from, m.seq),
        format!("sender {from}: message {} damaged", m.seq),
    )?;
    next[from] += 1;
    Ok(())
}

/// Two children put 3000 messages each (some streamed); the parent gets
/// them all, in order per sender; once both exited, a blocked get reports
/// that every peer died instead of hanging.
fn children_put_parent_gets(m: StartMethod) -> Result {
    let q = Queue::<Msg>::with_capacity(0, RING)?;
    let n = 3000;
    let procs: Vec<Process> = (0..2)
        .map(|from| Process::new(put_n, (q.clone(), from, n)).with_start_method(m))
        .collect();
    for p in &procs {
        p.start()?;
    }
    let mut next = [0u64; 2];
    for _ in 0..2 * n {
        take(&mut next, &q.get_timeout(Duration::from_secs(60))?)?;
    }
    for p in &procs {
        check(p.join()? == 0, "producer failed")?;
    }
    let t = Instant::now();
    let after = q.get();
    check(
        after == Err(QueueError::Disconnected),
        format!("a get with every producer dead: {after:?}"),
    )?;
    check(t.elapsed() < Duration::from_secs(30), "noticed within the guard")
}

/// Producers killed at random points (some while streaming a message
/// in parts): every message they published arrives exactly once, intact
/// and in order; the one being written when killed never arrives
/// half-written; the queue keeps working.
fn killed_producers_lose_and_duplicate_nothing(m: StartMethod) -> Result {
    let q = Queue::<Msg>::with_capacity(8, RING)?;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ m as u64;
    let mut next = [0u64; 3];
    for from in 0..3u32 {
        let p = Process::new(put_forever, (q.clone(), from)).with_start_method(m);
        p.start()?;
        for _ in 0..300 + next_random(&mut seed) % 300 {
            take(&mut next, &q.get_timeout(Duration::from_secs(60))?)?;
        }
        // Let it run into a put (small or streamed) and kill it there.
        std::thread::sleep(Duration::from_micros(next_random(&mut seed) % 3000));
        p.kill()?;
        check(p.join()? == -9, "killed")?;
    }
    // What they published is still delivered; then nothing more.
    loop {
        match q.get_timeout(Duration::from_millis(300)) {
            Ok(msg) => take(&mut next, &msg)?,
            Err(QueueError::Empty | QueueError::Disconnected) => break,
            Err(e) => return Err(e.to_string().into()),
        }
    }
    check(q.qsize() == 0, format!("qsize {} after draining", q.qsize()))?;
    // Not wedged: both locks and the counts are whole again (a small
    // message: one larger than the ring needs a reader at the same time).
    q.put(msg(9, 1)).map_err(|e| format!("final put: {e}"))?;
    check(q.qsize() == 1, "one message put")?;
    check(q.get_timeout(Duration::from_secs(30))? == msg(9, 1), "the new message")
}

fn get_and_mark((q, seen): (Queue<Msg>, RawArray<u32>)) {
    while let Ok(m) = q.get() {
        check_or_exit(m.body == body_for(m.from, m.seq));
        if let Some(count) = seen.atomics().get(m.seq as usize) {
            count.fetch_add(1, Relaxed);
        }
    }
}

fn check_or_exit(ok: bool) {
    if !ok {
        eprintln!("a damaged message");
        std::process::exit(3);
    }
}

/// Consumers killed at random points (some while reassembling a
/// streamed message): no message is taken twice, at most one per killed
/// consumer is lost with it, and the queue keeps working.
fn killed_consumers_never_duplicate_or_wedge(m: StartMethod) -> Result {
    let q = Queue::<Msg>::with_capacity(8, RING)?;
    let total = 3000u64;
    let seen = RawArray::<u32>::new(total as usize)?;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ m as u64;
    let mut seq = 0;
    let kills = 3;
    for _ in 0..kills {
        let c = Process::new(get_and_mark, (q.clone(), seen.clone())).with_start_method(m);
        c.start()?;
        for _ in 0..400 {
            q.put_timeout(msg(0, seq), Duration::from_secs(60))
                .map_err(|e| e.to_string())?;
            seq += 1;
        }
        std::thread::sleep(Duration::from_micros(next_random(&mut rng) % 3000));
        c.kill()?;
        check(c.join()? == -9, "killed")?;
    }
    // A consumer that lives to the end takes the rest.
    let last = Process::new(get_and_mark, (q.clone(), seen.clone())).with_start_method(m);
    last.start()?;
    while seq < total {
        q.put_timeout(msg(0, seq), Duration::from_secs(60))
            .map_err(|e| e.to_string())?;
        seq += 1;
    }
    let t = Instant::now();
    while !q.empty() && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    q.close();
    check(last.join()? == 0, "the last consumer failed")?;
    let counts = seen.to_vec();
    check(counts.iter().all(|&c| c <= 1), "a message was taken twice")?;
    let missing = counts.iter().filter(|&&c| c == 0).count();
    check(
        missing <= kills,
        format!("{missing} messages lost with {kills} killed consumers"),
    )
}

fn get_one_then_wait((q, ready): (Queue<Msg>, RawValue<u32>)) {
    let _ = q.get();
    ready.store(1, std::sync::atomic::Ordering::Release);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A put blocked on a full queue whose only consumer died returns an error
/// instead of hanging.
fn blocked_put_sees_dead_consumers(m: StartMethod) -> Result {
    let q = Queue::<Msg>::new(2)?;
    let ready = RawValue::new(0u32)?;
    let c = Process::new(get_one_then_wait, (q.clone(), ready.clone())).with_start_method(m);
    c.start()?;
    q.put(msg(0, 0)).map_err(|e| e.to_string())?;
    wait_flag(&ready);
    c.kill()?;
    c.join()?;
    q.put(msg(0, 1)).map_err(|e| e.to_string())?;
    q.put(msg(0, 2)).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let blocked = q.put(msg(0, 3));
    check(
        blocked.as_ref().is_err_and(|e| e.kind == QueueError::Disconnected),
        format!("{blocked:?}"),
    )?;
    check(blocked.is_err_and(|e| e.item == msg(0, 3)), "the item comes back")?;
    check(t.elapsed() < Duration::from_secs(30), "noticed within the guard")
}

fn echo(mut conn: Connection) {
    while let Ok(bytes) = conn.recv_bytes() {
        if conn.send_bytes(&bytes).is_err() {
            return;
        }
    }
}

/// Messages of every size up to 16 MiB (through 64 KiB rings) come back
/// intact through an echoing child; a dead peer is the end of the stream.
fn pipe_round_trips_any_size_then_eof(m: StartMethod) -> Result {
    let (mut ours, theirs) = Pipe::with_capacity(true, 64 << 10)?;
    let p = Process::new(echo, theirs).with_start_method(m);
    p.start()?;
    for len in [0usize, 1, 100, 32_760, 32_761, 1 << 20, 16 << 20] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
        ours.send_bytes(&msg).map_err(|e| format!("send {len}: {e}"))?;
        check(ours.recv_bytes()? == msg, format!("{len} bytes damaged"))?;
    }
    ours.send_bytes(b"last")?;
    check(ours.poll(Some(Duration::from_secs(60)))?, "echo")?;
    check(ours.recv_bytes()? == b"last", "last")?;
    p.kill()?;
    p.join()?;
    let t = Instant::now();
    check(ours.poll(None)?, "a dead peer polls true")?;
    check(
        ours.recv_bytes() == Err(PipeError::Eof),
        "end of stream after the peer died",
    )?;
    // Sends to a dead reader fill the ring (liveness is read from /proc
    // only by a sender that has to wait), then fail.
    let mut sent = 0;
    let refused = loop {
        match ours.send_bytes(&[0; 1024]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        check(sent <= 64, "more sent than the ring holds")?;
    };
    check(refused == PipeError::BrokenPipe, format!("{refused}"))?;
    check(t.elapsed() < Duration::from_secs(30), "noticed within the guard")
}

fn main() {
    shm::init();
    let mut tests = Vec::new();
    for m in METHODS {
        tests.push(Trial::test(format!("queue_children_put_parent_gets_{m}"), move || {
            children_put_parent_gets(m)
        }));
        tests.push(Trial::test(
            format!("queue_killed_producers_lose_and_duplicate_nothing_{m}"),
            move || killed_producers_lose_and_duplicate_nothing(m),
        ));
        tests.push(Trial::test(
            format!("queue_killed_consumers_never_duplicate_or_wedge_{m}"),
            move || killed_consumers_never_duplicate_or_wedge(m),
        ));
        tests.push(Trial::test(
            format!("queue_blocked_put_sees_dead_consumers_{m}"),
            move || blocked_put_sees_dead_consumers(m),
        ));
        tests.push(Trial::test(
            format!("pipe_round_trips_any_size_then_eof_{m}"),
            move || pipe_round_trips_any_size_then_eof(m),
        ));
    }
    run_trials(tests);
}
