//! The SPSC ring's unit tests (segments and real threads: not under loom).

use super::*;

#[test]
fn fifo_full_empty_and_batches() {
    let (mut tx, mut rx) = channel::<u32>(3).expect("create");
    assert_eq!(tx.capacity(), 4, "rounded up to a power of two");
    for i in 0..4 {
        tx.try_send(i).expect("room");
    }
    let err = tx.try_send(9).expect_err("full");
    assert!(matches!(err, TrySendError::Full(9)), "{err:?}");
    assert_eq!(rx.len(), 4);
    assert_eq!(rx.try_recv(), Ok(0));
    assert_eq!(tx.try_send_slice(&[10, 11, 12]).ok(), Some(1));
    assert!(matches!(tx.try_send_slice(&[13]), Err(TrySendError::Full(()))));
    let mut out = [0u32; 8];
    assert_eq!(rx.try_recv_slice(&mut out), Ok(4));
    assert_eq!(out[..4], [1, 2, 3, 10]);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(rx.try_recv_slice(&mut out), Err(TryRecvError::Empty));
    // Wrap around many times.
    for i in 0..1000u32 {
        tx.try_send(i).expect("room");
        assert_eq!(rx.try_recv(), Ok(i));
    }
}

#[test]
fn loans_write_and_read_in_place() {
    let (mut tx, mut rx) = channel::<[u64; 4]>(2).expect("create");
    {
        let mut slot = tx.try_reserve().expect("room");
        slot[0] = 1;
        slot[3] = 4;
        slot[1] = 0;
        slot[2] = 0;
        slot.commit();
    }
    // Reserved but never committed: nothing is published.
    assert!(tx.try_reserve().is_ok());
    {
        let msg = rx.try_peek().expect("one message");
        assert_eq!(*msg, [1, 0, 0, 4]);
    }
    assert!(matches!(rx.try_peek(), Err(TryRecvError::Empty)));
    // The blocking and timed loans.
    tx.reserve().expect("room").commit();
    assert_eq!(*rx.peek().expect("one message"), [0, 0, 0, 0]);
    let t = Duration::from_millis(5);
    assert_eq!(rx.peek_timeout(t).map(|_| ()), Err(RecvTimeoutError::Timeout(t)));
    tx.reserve_timeout(t).expect("room").commit();
    tx.reserve_timeout(t).expect("room").commit();
    assert!(matches!(tx.reserve_timeout(t), Err(SendTimeoutError::Timeout((), d)) if d == t));
    rx.close();
    assert!(matches!(tx.reserve(), Err(SendError::Disconnected(()))));
}

#[test]
fn close_lets_the_consumer_drain_then_disconnects() {
    let (mut tx, mut rx) = channel::<u8>(4).expect("create");
    tx.try_send(1).expect("room");
    tx.close();
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert!(matches!(rx.peek(), Err(RecvError::Disconnected)));
    let (mut tx, mut rx) = channel::<u8>(1).expect("create");
    tx.try_send(1).expect("room");
    rx.close();
    assert!(matches!(tx.send(2), Err(SendError::Disconnected(2))));
    assert!(matches!(tx.try_send_slice(&[2]), Err(TrySendError::Disconnected(()))));
}

#[test]
fn blocking_between_threads_and_timeouts() {
    let (mut tx, mut rx) = channel::<u64>(8).expect("create");
    let t = Duration::from_millis(5);
    assert_eq!(rx.recv_timeout(t), Err(RecvTimeoutError::Timeout(t)));
    let n = if cfg!(miri) { 500 } else { 100_000u64 };
    let t = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(i).expect("consumer alive");
        }
        tx.close();
    });
    let mut expect = 0;
    loop {
        match rx.recv() {
            Ok(v) => {
                assert_eq!(v, expect);
                expect += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(expect, n);
    t.join().expect("thread");
}

#[test]
fn scribbled_indices_are_reported_not_used() {
    let (mut tx, mut rx) = channel::<u32>(4).expect("create");
    tx.try_send(1).expect("room");
    rx.ring.header().tail.store(1_000_000, Relaxed);
    rx.cached_tail = 0;
    let e = rx.try_recv().expect_err("corrupted");
    assert!(
        matches!(&e, TryRecvError::Fault(Fault::Corrupted { object: "spsc ring", found, .. }) if found == "1000000"),
        "{e:?}"
    );
    rx.ring.header().head.store(u32::MAX / 2, Relaxed);
    tx.cached_head = 0;
    tx.tail = 100;
    assert!(matches!(
        tx.try_send(1),
        Err(TrySendError::Fault(1, Fault::Corrupted { .. }))
    ));
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Random mixes of every push and pop form, across two threads, on a
/// small ring (so it is full and empty often): the history must be
/// exactly 0, 1, 2, ... with nothing lost or repeated.
#[test]
fn random_histories_keep_fifo_without_loss_or_duplicates() {
    const N: u64 = if cfg!(miri) { 500 } else { 200_000 };
    for seed in [1u64, 0x9e37_79b9, 0xdead_beef] {
        let (mut tx, mut rx) = channel::<u64>(8).expect("create");
        let producer = std::thread::spawn(move || {
            let (mut s, mut next) = (seed, 0u64);
            while next < N {
                match xorshift(&mut s) % 3 {
                    0 => {
                        if tx.try_send(next).is_ok() {
                            next += 1;
                        }
                    }
                    1 => {
                        let k = (xorshift(&mut s) % 5 + 1).min(N - next);
                        let batch: Vec<u64> = (next..next + k).collect();
                        match tx.try_send_slice(&batch) {
                            Ok(n) => next += n as u64,
                            Err(TrySendError::Full(())) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    _ => {
                        if let Ok(mut slot) = tx.try_reserve() {
                            *slot = next;
                            slot.commit();
                            next += 1;
                        }
                    }
                }
            }
            tx.close();
        });
        let (mut s, mut expect) = (seed.rotate_left(17), 0u64);
        let mut buf = [0u64; 6];
        loop {
            match xorshift(&mut s) % 3 {
                0 => match rx.try_recv() {
                    Ok(v) => {
                        assert_eq!(v, expect);
                        expect += 1;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                },
                1 => {
                    let n = match rx.try_recv_slice(&mut buf) {
                        Ok(n) => n,
                        Err(TryRecvError::Empty) => 0,
                        Err(TryRecvError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    };
                    for v in &buf[..n] {
                        assert_eq!(*v, expect);
                        expect += 1;
                    }
                }
                _ => {
                    if let Ok(v) = rx.try_peek() {
                        assert_eq!(*v, expect);
                        expect += 1;
                    }
                }
            }
        }
        assert_eq!(expect, N, "seed {seed}");
        producer.join().expect("producer");
    }
}

#[test]
fn a_received_ring_with_a_damaged_capacity_is_refused() {
    let (tx, _rx) = channel::<u64>(8).expect("create");
    let again = || tx.ring.seg.try_clone().expect("the segment header is intact");
    assert!(Ring::<u64>::attach(again()).is_ok());
    for bad in [0u32, 3, 16, 1 << 31] {
        tx.ring.header().capacity.store(bad, Relaxed);
        assert!(
            matches!(Ring::<u64>::attach(again()), Err(SegmentError::BadPayload { .. })),
            "capacity {bad}"
        );
    }
    tx.ring.header().capacity.store(8, Relaxed);
    assert!(matches!(
        Ring::<u32>::attach(again()),
        Err(SegmentError::TypeMismatch { .. })
    ));
}

#[test]
fn zero_and_absurd_capacities_are_refused() {
    assert!(channel::<u8>(0).is_err());
    assert!(channel::<u8>(MAX_CAPACITY + 1).is_err());
    assert!(channel::<()>(4).is_err());
}

/// Runs this test binary again as an unrelated process (not started
/// through `shm`) that runs only the test `name`, with `SHM_RING_CHILD` set
/// to `arg`.
fn rerun(name: &str, arg: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("SHM_RING_CHILD", arg)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the test binary again")
}

/// In the re-run child only: opens the consumer of the named ring, checks
/// it receives 0..100 then the producer's close; exits 0 if so, 1 if not.
#[test]
fn child_consumes_the_named_ring() {
    let Ok(name) = std::env::var("SHM_RING_CHILD") else {
        return;
    };
    let wait = Duration::from_secs(60);
    let ok = (|| {
        let mut rx = Consumer::<u64>::open(&name).ok()?;
        for i in 0..100u64 {
            if rx.recv_timeout(wait).ok()? != i {
                return None;
            }
        }
        matches!(rx.recv_timeout(wait), Err(RecvTimeoutError::Disconnected)).then_some(())
    })();
    std::process::exit(i32::from(ok.is_none()));
}

#[test]
#[cfg_attr(miri, ignore = "starts a process, opens a named segment")]
fn an_unrelated_process_opens_an_end_by_name() {
    let name = format!("shm-ring-test-named-{}", std::process::id());
    let (mut tx, rx) = create_named::<u64>(&name, 4).expect("create");
    // Unused, so that the child may claim it.
    drop(rx);
    assert!(matches!(
        create_named::<u64>(&name, 4),
        Err(SegmentError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Consumer::<u32>::open(&name),
        Err(OpenError::Segment(SegmentError::TypeMismatch { .. }))
    ));
    let mut child = rerun("ring::spsc::tests::child_consumes_the_named_ring", &name);
    let pid = child.id();
    for i in 0..100u64 {
        tx.send_timeout(i, Duration::from_secs(60))
            .expect("the child opens the consumer and receives");
    }
    // 100 messages went through 4 slots: the child holds the consumer.
    match Consumer::<u64>::open(&name) {
        Err(OpenError::Held { end, pid: p, .. }) => assert_eq!((end, p), ("consumer", pid)),
        other => panic!("expected the consumer held by the child, got {other:?}"),
    }
    // We sent: the producer is held by this (live) process.
    assert!(matches!(Producer::<u64>::open(&name), Err(OpenError::Held { .. })));
    tx.close();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().expect("kill");
            panic!("the child did not finish");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(status.code(), Some(0), "the child saw 0..100, then the close");
    // The child is gone: its end may be claimed again.
    assert!(Consumer::<u64>::open(&name).is_ok());
    Segment::unlink(&name).expect("unlink");
}

mod scribble_tests {
    use super::super::*;
    use crate::test_util::{Rng, bounded, scribble};

    /// The header's index words (and the slots) scribbled, seeded: every
    /// non-blocking or timed operation returns (Ok, Empty/Full,
    /// Disconnected or Corrupted), none hangs or panics.
    #[test]
    fn random_scribbles_never_hang() {
        let rounds = if cfg!(miri) { 4 } else { 300 };
        let t = Duration::from_millis(20);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..rounds {
            let (mut tx, mut rx) = channel::<u64>(4).expect("create");
            for i in 0..rng.below(5) {
                tx.try_send(i as u64).expect("room");
            }
            let _ = rx.try_recv();
            let seg = &tx.ring.seg;
            // The two index lines and the slots (line 0 holds the owner
            // and sleep words, whose scribbles cost a liveness slice).
            let (base, len) = (seg.payload().as_ptr().wrapping_add(128), seg.payload_len() - 128);
            // SAFETY: inside the payload, 128-aligned; every access to it
            // is atomic.
            unsafe { scribble(base, len, 1 + rng.below(4), &mut rng) };
            let seed = rng.next();
            bounded(&format!("round {round}"), move || {
                let mut r = Rng(seed | 1);
                for _ in 0..8 {
                    let _ = match r.below(5) {
                        0 => rx.try_recv().map_err(|e| e.to_string()),
                        1 => rx.recv_timeout(t).map_err(|e| e.to_string()),
                        2 => tx.try_send(9).map(|()| 0).map_err(|e| e.to_string()),
                        3 => tx.send_timeout(9, t).map(|()| 0).map_err(|e| e.to_string()),
                        _ => Ok(rx.try_peek().map_or(0, |v| *v)),
                    };
                }
            });
        }
    }

    /// Byte arrays (copied as 8-byte words) and odd-sized types keep every
    /// byte through the atomic-word copies.
    #[test]
    #[allow(clippy::cast_possible_truncation, reason = "test patterns")]
    fn byte_arrays_and_odd_sizes_round_trip() {
        let (mut tx, mut rx) = channel::<[u8; 100]>(4).expect("create");
        let (mut tx2, mut rx2) = channel::<[u16; 9]>(4).expect("create");
        for i in 0..10u8 {
            let v: [u8; 100] = std::array::from_fn(|j| i.wrapping_mul(31).wrapping_add(j as u8));
            tx.try_send(v).expect("room");
            assert_eq!(rx.try_recv(), Ok(v));
            let w: [u16; 9] = std::array::from_fn(|j| u16::from(i) * 1000 + j as u16);
            tx2.try_send(w).expect("room");
            assert_eq!(rx2.try_recv(), Ok(w));
        }
    }

    /// Indices further apart than the ring are reported, not used.
    #[test]
    fn indices_apart_by_more_than_the_ring_are_corrupted() {
        let (mut tx, mut rx) = channel::<u64>(4).expect("create");
        tx.try_send(1).expect("room");
        tx.h().tail.store(100, Relaxed);
        assert!(matches!(
            rx.try_recv(),
            Err(TryRecvError::Fault(Fault::Corrupted { .. }))
        ));
        rx.h().head.store(200, Relaxed);
        // The producer trusts its cached head until the ring looks full.
        let r = bounded("push", move || {
            (0..5)
                .map(|_| {
                    tx.send_timeout(1, Duration::from_millis(20))
                        .map_err(|e| e.fault().cloned())
                })
                .find(Result::is_err)
        });
        assert!(matches!(r, Some(Err(Some(Fault::Corrupted { .. })))), "{r:?}");
    }
}
