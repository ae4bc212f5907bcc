//! `Queue`, `JoinableQueue` and `Pipe` across real processes, under every
//! start method: order, no loss, no duplicate, messages larger than the
//! ring, and processes killed (SIGKILL) at random points while they put or get.

#![allow(clippy::cast_possible_truncation, reason = "test byte patterns")]

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmproc::{
    Connection, Pipe, PipeError, Process, Queue, RawArray, RawValue, RecvError, RecvTimeoutError, SendError,
    StartMethod,
};
use shmproc_tests::{check, next_random, wait_flag};

type Result = shmproc_tests::TestResult;

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
        after == Err(RecvError::Disconnected),
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
            Err(RecvTimeoutError::Timeout(_) | RecvTimeoutError::Disconnected) => break,
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
    shmproc_tests::sleep_until_killed();
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
        blocked.as_ref().is_err_and(SendError::is_disconnected),
        format!("{blocked:?}"),
    )?;
    check(
        blocked.is_err_and(|e| e.into_inner() == msg(0, 3)),
        "the item comes back",
    )?;
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
    check(ours.poll_timeout(Duration::from_secs(60))?, "echo")?;
    check(ours.recv_bytes()? == b"last", "last")?;
    p.kill()?;
    p.join()?;
    let t = Instant::now();
    ours.wait_readable()?;
    check(ours.poll()?, "a dead peer polls true")?;
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

/// An item of the kill-inside-`get` test. Decoding it (which `get` does
/// before it returns) runs [`on_decode`] in the consumer.
#[derive(Serialize, Deserialize, Debug)]
#[serde(from = "TrackedWire")]
struct Tracked {
    id: u32,
}

#[derive(Deserialize)]
struct TrackedWire {
    id: u32,
}

impl From<TrackedWire> for Tracked {
    fn from(w: TrackedWire) -> Self {
        on_decode(w.id);
        Self { id: w.id }
    }
}

/// What a consumer of the kill test does while `get` decodes an item:
/// its incarnation, the item at which it kills itself (0: never), and the
/// shared words where it notes what it decoded and that it killed itself.
struct DecodeHook {
    incarnation: usize,
    kill_at: u32,
    pending: RawArray<u32>,
    self_killed: RawArray<u32>,
}

static HOOK: std::sync::OnceLock<DecodeHook> = std::sync::OnceLock::new();

thread_local! {
    /// Items this consumer decoded (its one thread gets them all).
    static DECODED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Inside `get`, as it decodes item `id`: the consumer's `kill_at`-th item
/// kills it right there (SIGKILL, before `get` can return); any other item
/// is noted as pending, the last one this consumer decoded. No hook in the
/// parent.
fn on_decode(id: u32) {
    let Some(h) = HOOK.get() else { return };
    let n = DECODED.get() + 1;
    DECODED.set(n);
    if n == h.kill_at {
        // Relaxed: the parent reads it after this process ended (join).
        h.self_killed.atomics()[h.incarnation].store(1, Relaxed);
        shmproc::sys::kill_pid(shmproc::sys::getpid(), shmproc::sys::SIGKILL);
        unreachable!("SIGKILL ends the process");
    }
    // Relaxed: as above.
    h.pending.atomics()[h.incarnation].store(id + 1, Relaxed);
}

type ConsumerArgs = (
    Queue<Tracked>,
    RawArray<u32>,
    RawArray<u32>,
    RawArray<u32>,
    RawValue<u32>,
    (u32, u32),
);

/// A consumer of the kill test: gets items and counts each in `delivered`
/// as soon as `get` returns it; once `done` is set, it stops at the first
/// empty look.
fn consume_and_count((q, delivered, pending, self_killed, done, (incarnation, kill_at)): ConsumerArgs) {
    let hook = DecodeHook {
        incarnation: incarnation as usize,
        kill_at,
        pending,
        self_killed,
    };
    if HOOK.set(hook).is_err() {
        std::process::exit(4);
    }
    loop {
        match q.get_timeout(Duration::from_millis(20)) {
            Ok(t) => match delivered.atomics().get(t.id as usize) {
                // Relaxed: the parent reads the counts after joining.
                Some(count) => drop(count.fetch_add(1, Relaxed)),
                None => std::process::exit(5),
            },
            // Acquire: pairs with the parent's Release store of `done`.
            Err(RecvTimeoutError::Timeout(_)) if done.load(std::sync::atomic::Ordering::Acquire) == 1 => return,
            Err(RecvTimeoutError::Timeout(_)) => {}
            Err(e) => {
                eprintln!("consumer: {e}");
                std::process::exit(3);
            }
        }
    }
}

type ProducerArgs = (Queue<Tracked>, u32, RawValue<u32>, RawArray<u32>);

/// A producer of the kill test: puts ids `first`, `first + 2`, ... until
/// `stop` is set (or its share of ids runs out), counting in `put[first]`
/// each put that returned `Ok`.
fn produce_ids((q, first, stop, put): ProducerArgs) {
    let share = (put_capacity() / 2) as u32;
    for k in 0..share {
        // Acquire: pairs with the parent's Release store of `stop`.
        if stop.load(std::sync::atomic::Ordering::Acquire) == 1 {
            return;
        }
        q.put(Tracked { id: first + 2 * k }).expect("the parent lives");
        // Release: the parent reads it after joining.
        put.atomics()[first as usize].store(k + 1, std::sync::atomic::Ordering::Release);
    }
}

/// Ids the kill test can hand out (the producers stop long before, once
/// the kills are done; running out shows as the test's time guard).
fn put_capacity() -> usize {
    1 << 18
}

/// Joins the producers, then counts in `delivered` what is left in the
/// queue: what a consumer left behind when it stopped at an empty look
/// while a dead one's get lock was still being recovered.
fn drain_into(producers: &[Process], q: &Queue<Tracked>, delivered: &RawArray<u32>) -> Result {
    for p in producers {
        let code = p.join_timeout(Duration::from_secs(30))?;
        check(code == Some(0), format!("a producer ended with {code:?}"))?;
    }
    loop {
        match q.get_timeout(Duration::from_millis(500)) {
            Ok(t) => {
                let count = delivered.atomics().get(t.id as usize).ok_or("an unknown id")?;
                count.fetch_add(1, Relaxed);
            }
            Err(RecvTimeoutError::Timeout(_) | RecvTimeoutError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.to_string().into()),
        }
    }
}

/// The kill test's verdict: `counts[id]` deliveries of each id, `puts`
/// items put by each producer, and which consumers killed themselves,
/// what each decoded last, and which ones the parent killed.
fn check_deliveries(
    counts: &[u32],
    puts: &[u32],
    killed_self: &[u32],
    pend: &[u32],
    parent_killed: &[usize],
) -> Result {
    let twice: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 1).collect();
    check(twice.is_empty(), format!("delivered more than once: {twice:?}"))?;
    // Items whose get may have returned in a consumer the parent killed.
    let allowed: Vec<u32> = parent_killed
        .iter()
        .filter(|&&inc| killed_self[inc] == 0 && pend[inc] != 0)
        .map(|&inc| pend[inc] - 1)
        .collect();
    let committed = (0..2u32).flat_map(|first| (0..puts[first as usize]).map(move |k| first + 2 * k));
    let lost: Vec<u32> = committed
        .filter(|&id| counts[id as usize] == 0 && !allowed.contains(&id))
        .collect();
    check(
        lost.is_empty(),
        format!("items whose put returned Ok never delivered: {lost:?}"),
    )?;
    let extra = (0..counts.len() as u32)
        .filter(|&id| counts[id as usize] != 0 && id / 2 >= puts[(id % 2) as usize])
        .count();
    check(extra == 0, format!("{extra} items delivered that were never put"))?;
    let in_window = allowed.iter().filter(|&&id| counts[id as usize] == 0).count();
    eprintln!(
        "kill test: {} items put, {in_window} lost in the documented return window",
        puts[0] + puts[1]
    );
    Ok(())
}

/// Kills, when dropped, every child it holds that still runs, so that a
/// failed check does not leave producers blocked (the test's process would
/// wait for them at exit).
struct KillOnDrop(Vec<Process>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_alive() {
                let _ = p.kill();
                let _ = p.join_timeout(Duration::from_secs(10));
            }
        }
    }
}

/// Two producers put items until the kills are done; two consumers are
/// killed inside `get`: at least `SELF_KILLS` times by themselves while
/// `get` decodes an item (a kill that lands after the commit would lose a
/// message whose `put` returned), and `PARENT_KILLS` times by the parent at
/// random points. Each dead consumer is replaced. Every item whose `put`
/// returned is delivered exactly once, except that an item may be missing
/// when it is the last one a consumer killed by the parent had decoded
/// (its `get` may have returned just before the kill: the one window the
/// queue documents). Nothing is ever delivered twice.
fn queue_killed_consumers_lose_only_what_they_returned(m: StartMethod) -> Result {
    const SELF_KILLS: usize = 25;
    const PARENT_KILLS: u32 = 25;
    // Two at the start, one per kill, and at most two plain consumers the
    // parent kills beyond its count to make room for the last self-killers.
    const MAX_INCARNATIONS: usize = 4 + SELF_KILLS + PARENT_KILLS as usize;
    let guard = Instant::now();
    let q = Queue::<Tracked>::with_capacity(64, RING)?;
    let delivered = RawArray::<u32>::new(put_capacity())?;
    let pending = RawArray::<u32>::new(MAX_INCARNATIONS)?;
    let self_killed = RawArray::<u32>::new(MAX_INCARNATIONS)?;
    let put = RawArray::<u32>::new(2)?;
    let done = RawValue::<u32>::new(0)?;
    let stop = RawValue::<u32>::new(0)?;
    let mut rng = 0x51f1_5eed_1234_5678_u64 ^ m as u64;
    let mut parent_kills_left = PARENT_KILLS;
    let mut parent_killed = Vec::new();
    let mut incarnations = 0u32;
    let children = std::cell::RefCell::new(KillOnDrop(Vec::new()));
    // Consumers that will kill themselves, and consumers for the parent to
    // kill, in random order; each self-killer is left alone until it did.
    let self_killers_left = std::cell::Cell::new(SELF_KILLS);
    let mut spawn = |rng: &mut u64, parent_kills_left: u32| -> std::result::Result<(usize, u32, Process), String> {
        let inc = incarnations as usize;
        if inc >= MAX_INCARNATIONS {
            return Err(format!("consumer {inc} died unplanned"));
        }
        let kills_itself =
            self_killers_left.get() > 0 && (parent_kills_left == 0 || next_random(rng).is_multiple_of(2));
        let kill_at = if kills_itself {
            self_killers_left.set(self_killers_left.get() - 1);
            1 + (next_random(rng) % 40) as u32
        } else {
            0
        };
        let args = (
            q.clone(),
            delivered.clone(),
            pending.clone(),
            self_killed.clone(),
            done.clone(),
            (incarnations, kill_at),
        );
        let p = Process::new(consume_and_count, args).with_start_method(m);
        p.start().map_err(|e| e.to_string())?;
        children.borrow_mut().0.push(p.clone());
        incarnations += 1;
        Ok((inc, kill_at, p))
    };
    let mut consumers = [spawn(&mut rng, PARENT_KILLS)?, spawn(&mut rng, PARENT_KILLS)?];
    let producers = [0u32, 1]
        .map(|first| Process::new(produce_ids, (q.clone(), first, stop.clone(), put.clone())).with_start_method(m));
    for p in &producers {
        p.start()?;
        children.borrow_mut().0.push(p.clone());
    }
    let mut finished = [false; 2];
    loop {
        check(guard.elapsed() < Duration::from_secs(60), "not done within 60 s")?;
        let self_kills = self_killed.to_vec().iter().filter(|&&k| k == 1).count();
        let kills_done = parent_kills_left == 0 && self_kills == SELF_KILLS;
        for (slot, consumer) in consumers.iter_mut().enumerate() {
            match consumer.2.exitcode() {
                None => {}
                Some(0) => finished[slot] = true,
                // Killed (by itself or the parent): replace it.
                Some(-9) if !finished[slot] => *consumer = spawn(&mut rng, parent_kills_left)?,
                Some(code) => return Err(format!("consumer {} exited with {code}", consumer.0).into()),
            }
        }
        if parent_kills_left > 0 || self_killers_left.get() > 0 {
            std::thread::sleep(Duration::from_micros(next_random(&mut rng) % 3000));
            let (inc, kill_at, p) = &consumers[(next_random(&mut rng) % 2) as usize];
            if *kill_at == 0 && p.is_alive() {
                p.kill()?;
                check(p.join()? == -9, "killed")?;
                parent_killed.push(*inc);
                parent_kills_left = parent_kills_left.saturating_sub(1);
            }
            continue;
        }
        if !kills_done {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // Release: pairs with the producers' Acquire load.
        stop.store(1, std::sync::atomic::Ordering::Release);
        // Relaxed: only the parent writes `done`.
        if done.load(Relaxed) == 0 && producers.iter().all(|p| p.exitcode().is_some()) && q.empty() {
            // Release: pairs with the consumers' Acquire load.
            done.store(1, std::sync::atomic::Ordering::Release);
        }
        if finished.iter().all(|&f| f) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drain_into(&producers, &q, &delivered)?;
    check_deliveries(
        &delivered.to_vec(),
        &put.to_vec(),
        &self_killed.to_vec(),
        &pending.to_vec(),
        &parent_killed,
    )?;
    check(q.qsize() == 0, format!("qsize {} at the end", q.qsize()))
}

shmproc_tests::trials! {
    per_method {
        queue_children_put_parent_gets => children_put_parent_gets,
        queue_killed_producers_lose_and_duplicate_nothing => killed_producers_lose_and_duplicate_nothing,
        queue_killed_consumers_never_duplicate_or_wedge => killed_consumers_never_duplicate_or_wedge,
        queue_killed_consumers_lose_only_what_they_returned,
        queue_blocked_put_sees_dead_consumers => blocked_put_sees_dead_consumers,
        pipe_round_trips_any_size_then_eof,
    }
}
