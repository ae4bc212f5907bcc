//! Loom model checks of the typed rings and the duplex channel (the
//! queue's are in `queue::loom_tests`), run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmproc-collections --lib loom`.
//!
//! The rings run on heap memory with loom's atomics (`crate::sync`). Each
//! slot is a loom cell, so a read of a slot before its publication, or a
//! write before it was handed back, is a race loom reports. The duplex
//! channel's mailbox is heap memory too, and its two payload cells are loom
//! cells: a payload read before its word was published, or written before
//! `taken` handed the cell back, is a race. A futex is a
//! mutex and a condition variable with no timeout, so a wake-up lost by the
//! sleep handshake is a deadlock loom reports. Killed processes are staged
//! by writing what they leave behind (the model's `DEAD` owner id).
//!
//! Capacities are 2 and each model moves 3 or 4 values, so every model
//! wraps around; the whole run takes seconds at CI's two preemptions.
//!
//! The duplex models cover the cell-then-ring order of `try_recv`, the bell
//! handshake (blocking ping-pong, and a blocking stream whose sender waits
//! for ring room), and close. Each fails when one of these is broken on
//! purpose: an Acquire or Release of the mailbox words made Relaxed, the
//! second look at the cell in `try_recv`, the close read before the cell in
//! `try_recv_empty`, the wake after a cell message, the fast side's barrier,
//! or a condition of the sleeper's last look.
//!
//! What the models found: a consumer could read a slot's sequence number
//! more than a lap stale and report a corrupted ring (positions are now
//! Acquire/Release); a consumer late by a lap could mark a live message as
//! a tombstone (the tombstone is now written under the dead producer's
//! claim); a waker late with a value the sleeper had already seen took
//! down the flag raised for the next one, which then woke nobody (the flag
//! now names the value its sleeper saw); a duplex receiver about to sleep
//! could read the bell bumped by the sender's `close` as the value to wait
//! on, yet miss the close, and sleep a whole liveness slice (the bump is
//! now Release and the sleeper's load of the bell Acquire); a queue's
//! `close` could reach a consumer between its last look and its futex call
//! and leave it asleep a whole liveness slice, since a close does not
//! change the word the consumer sleeps on (the byte ring's and the SPSC
//! ring's closes had the same gap): closes now wake until the sleeper's
//! flag is down, and a sleeper's last look includes the close
//! (`ring::wake_for_close`); `JoinableQueue`'s join could miss the last
//! `task_done` under loom, whose `SeqCst` accesses are only `AcqRel` (the
//! pair is now made of `SeqCst` fences).
//!
//! At three preemptions `loom_spsc_blocking_push_pop_wrap_around` reports
//! a deadlock that the C++ memory model rules out: loom lets a load return
//! a read-modify-write's value although a store ordered after that
//! read-modify-write happens before the load. This is loom's issue #254:
//! it lets a store fall between an RMW's read and its write in the
//! modification order. A waker takes the sleep flag down with a
//! compare-exchange, so models whose two threads sleep and wake each other
//! in turn meet it sooner: the duplex's blocking models report such a
//! deadlock at two preemptions already, and run at one
//! (`model_with_one_preemption`). With loom patched locally to apply RMW
//! atomicity to later stores (as loom's pull request #391 does), the spsc
//! model passes at three preemptions and the duplex models at two and
//! three.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use loom::sync::Arc;
use loom::thread;

use crate::duplex;
use crate::mpmc::{self, Mpmc};
use crate::ring::Word;
use crate::spsc;
use crate::sync::{AtomicU32, DEAD};
use shmproc_core::{RecvError, TryRecvError, TrySendError};

#[test]
fn loom_spsc_blocking_push_pop_wrap_around() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::channel::<u32>(2).expect("heap ring");
        let producer = thread::spawn(move || {
            for i in 0..3 {
                tx.send(i).expect("the consumer is alive");
            }
        });
        for i in 0..3 {
            assert_eq!(rx.recv(), Ok(i));
        }
        producer.join().expect("producer");
    });
}

/// A consumer asleep on an empty ring wakes when the producer closes its
/// end (the close does not move `tail`: see `ring::wake_for_close`).
#[test]
fn loom_spsc_close_wakes_a_waiting_consumer() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::channel::<u32>(2).expect("heap ring");
        let producer = thread::spawn(move || {
            tx.send(1).expect("the consumer is alive");
            tx.close();
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        producer.join().expect("producer");
    });
}

#[test]
fn loom_spsc_batches_and_loans_wrap_around() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::channel::<u32>(2).expect("heap ring");
        let producer = thread::spawn(move || {
            loop {
                if let Ok(mut slot) = tx.try_reserve() {
                    *slot = 0;
                    slot.commit();
                    break;
                }
                thread::yield_now();
            }
            let items = [1, 2, 3];
            let mut sent = 0;
            while sent < items.len() {
                let n = match tx.try_send_slice(&items[sent..]) {
                    Ok(n) => n,
                    Err(TrySendError::Full(())) => 0,
                    Err(e) => panic!("{e}"),
                };
                sent += n;
                if n == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        loop {
            if let Ok(v) = rx.try_peek() {
                got.push(*v);
                break;
            }
            thread::yield_now();
        }
        let mut buf = [0u32; 2];
        while got.len() < 4 {
            let n = match rx.try_recv_slice(&mut buf) {
                Ok(n) => n,
                Err(TryRecvError::Empty) => 0,
                Err(e) => panic!("{e}"),
            };
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [0, 1, 2, 3]);
        producer.join().expect("producer");
    });
}

/// Checks that the consumers' lists hold `expect` exactly once each, and
/// that each list keeps every producer's order (producer = value / 10).
fn check_histories(lists: &[Vec<u32>], expect: &[u32]) {
    for list in lists {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                assert!(a / 10 != b / 10 || a < b, "per-producer FIFO: {list:?}");
            }
        }
    }
    let mut all: Vec<u32> = lists.concat();
    all.sort_unstable();
    assert_eq!(all, expect, "nothing lost or duplicated");
}

// The MPMC models run two threads each: with three, two threads spinning on
// a slot claimed by the third (claims are held across a few instructions)
// make loom explore long spin paths without finding more.

/// Thread A pushes 10, 11 while the main thread pushes 20 and pops all three.
#[test]
fn loom_mpmc_two_producers_one_consumer() {
    loom::model(|| {
        let mut q = mpmc::ring::<u32>(2).expect("heap ring");
        let (_, a) = spawn_on(&q, |q| {
            for v in [10, 11] {
                q.put(v).expect("room eventually");
            }
        });
        let (mut mine, mut got) = (Some(20), Vec::new());
        while got.len() < 3 {
            // Full only while the ring holds a message, so the pop below
            // cannot wait forever.
            mine = mine.filter(|&v| q.try_put(v).is_err());
            got.push(q.get().expect("a message"));
        }
        a.join().expect("producer");
        check_histories(&[got], &[10, 11, 20]);
    });
}

/// The main thread pushes 10, 11, pops, pushes 12 and pops again while
/// thread B pops once: B may come a lap after the main thread's pops moved
/// `deq` on (a stale look at the slot then must not read as corruption).
#[test]
fn loom_mpmc_one_producer_two_consumers() {
    loom::model(|| {
        let mut q = mpmc::ring::<u32>(2).expect("heap ring");
        let (_, b) = spawn_on(&q, |q| vec![q.get().expect("a message")]);
        let mut mine = Vec::new();
        for v in [10, 11, 12] {
            q.put(v).expect("room");
            if v > 10 {
                mine.push(q.get().expect("a message"));
            }
        }
        let theirs = b.join().expect("consumer");
        check_histories(&[mine, theirs], &[10, 11, 12]);
    });
}

// With a dead process staged, the models use the non-blocking calls: a
// blocking one would wait on a slot the dead process holds, and the
// model's futex has no liveness slice to end that wait.

/// Pushes with `try_put`, yielding while it fails.
fn push_all(q: &mut Mpmc<u32>, values: &[u32]) {
    for &v in values {
        while q.try_put(v).is_err() {
            thread::yield_now();
        }
    }
}

/// Pops with `try_get` until, after `done` was set, the ring looked empty
/// twice in a row (a stuck slot is checked on the second look).
fn pop_all(q: &mut Mpmc<u32>, done: &AtomicU32) -> Vec<u32> {
    let (mut got, mut empty_after_done) = (Vec::new(), 0);
    while empty_after_done < 2 {
        // Acquire: pairs with the Release in `spawn_on`, so that what was
        // pushed before is seen by the looks that follow.
        let finished = done.load(Acquire) != 0;
        if let Ok(v) = q.try_get() {
            got.push(v);
            empty_after_done = 0;
        } else {
            empty_after_done += u32::from(finished);
            thread::yield_now();
        }
    }
    got
}

/// A ring of capacity 2 holding `values`, into which `stage` writes what a
/// killed process left behind: `enq`, `deq`, and slot 0's `seq` and `owner`
/// (Relaxed stores: no other thread runs yet).
fn crashed(values: &[u32], stage: impl FnOnce([&Word; 4])) -> Mpmc<u32> {
    let mut q = mpmc::ring::<u32>(2).expect("heap ring");
    for &v in values {
        q.try_put(v).expect("room");
    }
    stage(q.words(0));
    q
}

/// Runs `work` on a handle of `q` on a thread of its own; the word returned
/// is set once `work` is done.
fn spawn_on<R: Send + 'static>(
    q: &Mpmc<u32>,
    work: impl FnOnce(&mut Mpmc<u32>) -> R + Send + 'static,
) -> (Arc<AtomicU32>, thread::JoinHandle<R>) {
    let (mut q, done) = (q.clone(), Arc::new(AtomicU32::new(0)));
    let handle = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let r = work(&mut q);
            // Release: pairs with the Acquire in `pop_all`.
            done.store(1, Release);
            r
        })
    };
    (done, handle)
}

/// A producer that claimed position 0 and died before it moved `enq`:
/// thread A and the main thread race to take the claim over.
#[test]
fn loom_mpmc_dead_producers_claim_is_taken_over() {
    loom::model(|| {
        // Relaxed: see `crashed`.
        let mut q = crashed(&[], |[_, _, _, owner]| owner.store(DEAD, Relaxed));
        let (done, a) = spawn_on(&q, |q| push_all(q, &[10]));
        push_all(&mut q, &[20]);
        let got = pop_all(&mut q, &done);
        a.join().expect("producer");
        check_histories(&[got], &[10, 20]);
    });
}

/// A producer that moved `enq` past position 0 and died before it
/// published: thread A pushes 10, pops, then pushes 11 into the slot of the
/// dead message once it is recycled, while the main thread pops; both may
/// turn the slot into a tombstone.
#[test]
fn loom_mpmc_dead_producers_slot_is_skipped_once() {
    loom::model(|| {
        let mut q = crashed(&[], |[enq, _, _, owner]| {
            // Relaxed: see `crashed`.
            enq.store(1, Relaxed);
            owner.store(DEAD, Relaxed);
        });
        let (done, a) = spawn_on(&q, |q| {
            push_all(q, &[10]);
            let got: Vec<u32> = (0..2)
                .filter_map(|_| {
                    let v = q.try_get().ok();
                    thread::yield_now();
                    v
                })
                .collect();
            push_all(q, &[11]);
            got
        });
        let mine = pop_all(&mut q, &done);
        let theirs = a.join().expect("thread A");
        check_histories(&[mine, theirs], &[10, 11]);
    });
}

/// A consumer that moved `deq` past position 0 and died before it handed
/// the slot back (message 1 died with it): thread A and the main thread
/// race to recycle it.
#[test]
fn loom_mpmc_dead_consumers_slot_is_recycled_once() {
    loom::model(|| {
        let mut q = crashed(&[1, 2], |[_, deq, _, owner]| {
            // Relaxed: see `crashed`.
            deq.store(1, Relaxed);
            owner.store(DEAD, Relaxed);
        });
        let (done, a) = spawn_on(&q, |q| push_all(q, &[10]));
        assert_eq!(q.try_get(), Ok(2), "the oldest message first");
        push_all(&mut q, &[20]);
        let got = pop_all(&mut q, &done);
        a.join().expect("producer");
        check_histories(&[got], &[10, 20]);
    });
}

// The duplex models (see the module docs for what they check).

/// Runs `f` under loom with at most one preemption (fewer if
/// `LOOM_MAX_PREEMPTIONS` says so), for the models in which both threads
/// sleep and wake each other in turn: at two, loom reports deadlocks that
/// the C++ memory model rules out (module docs).
fn model_with_one_preemption(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(1, |b| b.min(1)));
    builder.check(f);
}

/// Receives with `try_recv`, yielding while it is empty, until `n` values
/// came.
fn try_recv_n(end: &mut duplex::Duplex<u32, u32>, n: usize) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < n {
        match end.try_recv() {
            Ok(v) => got.push(v),
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    got
}

/// Sends with `try_send`, yielding while it is full.
fn try_send_all(end: &mut duplex::Duplex<u32, u32>, values: &[u32]) {
    for mut v in values.iter().copied() {
        loop {
            match end.try_send(v) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => v = back,
                Err(e) => panic!("{e}"),
            }
            thread::yield_now();
        }
    }
}

/// The sender puts 0 in the cell and 1, 2 on the ring (the cell is not
/// free yet, or the ring not drained), idles once (which re-reads the
/// ring's head), then sends 3: into the cell again if the receiver took
/// everything by then (a cell message behind ring messages otherwise), or
/// on the ring. The receiver polls and must see 0, 1, 2, 3.
#[test]
fn loom_duplex_cell_and_ring_keep_fifo() {
    loom::model(|| {
        let (mut tx, mut rx) = duplex::channel::<u32, u32>(2).expect("heap duplex");
        let sender = thread::spawn(move || {
            try_send_all(&mut tx, &[0, 1, 2]);
            assert_eq!(tx.try_recv(), Err(TryRecvError::Empty), "nothing comes back");
            try_send_all(&mut tx, &[3]);
        });
        assert_eq!(try_recv_n(&mut rx, 4), [0, 1, 2, 3]);
        sender.join().expect("sender");
    });
}

/// Three blocking request/answer rounds: each side sleeps on its bell
/// while the other works, so a wake-up lost by the bell handshake (or by
/// the cell hand-back) is a deadlock.
#[test]
fn loom_duplex_blocking_ping_pong() {
    const ROUNDS: u32 = 3;
    model_with_one_preemption(|| {
        let (mut client, mut server) = duplex::channel::<u32, u32>(2).expect("heap duplex");
        let echo = thread::spawn(move || {
            for _ in 0..ROUNDS {
                let x = server.recv().expect("a request");
                server.send(x + 10).expect("the client is alive");
            }
        });
        for i in 0..ROUNDS {
            client.send(i).expect("the server is alive");
            assert_eq!(client.recv(), Ok(i + 10));
        }
        echo.join().expect("server");
    });
}

/// A blocking stream that fills the ring: 0 goes in the cell, 1 and 2 on
/// the ring, and the send of 3 waits for room (as the ring's producer) while
/// the receiver sleeps on its bell and wakes the sender by popping.
#[test]
fn loom_duplex_blocking_stream_waits_for_room() {
    model_with_one_preemption(|| {
        let (mut tx, mut rx) = duplex::channel::<u32, u32>(2).expect("heap duplex");
        let sender = thread::spawn(move || {
            for i in 0..4 {
                tx.send(i).expect("the receiver is alive");
            }
        });
        for i in 0..4 {
            assert_eq!(rx.recv(), Ok(i));
        }
        sender.join().expect("sender");
    });
}

/// The sender sends 1, 2 and closes; a blocked receiver gets both, then
/// `Disconnected` (the close must wake it, and be seen after the sends).
#[test]
fn loom_duplex_close_after_sends_drains_then_disconnects() {
    loom::model(|| {
        let (mut tx, mut rx) = duplex::channel::<u32, u32>(2).expect("heap duplex");
        let sender = thread::spawn(move || {
            tx.send(1).expect("the receiver is alive");
            tx.send(2).expect("the receiver is alive");
            tx.close();
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        sender.join().expect("sender");
    });
}
