//! Property tests (proptest) of the byte ring and the queue: random
//! histories checked against a model, and random multi-threaded runs
//! checked for loss, duplication and per-producer order.

#![allow(clippy::cast_possible_truncation, reason = "small test counts and byte patterns")]

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use shmproc_collections::bytes;
use shmproc_collections::queue::Queue;
use shmproc_core::{Fault, RecvTimeoutError, TryRecvError, TrySendError};

/// One step of a single-threaded byte-ring history.
#[derive(Clone, Debug)]
enum Op {
    /// `try_send` of a message of this length.
    Send(usize),
    /// `reserve(len)`, write, `commit_len(keep)` (or drop when `keep` is None).
    Loan(usize, Option<usize>),
    /// `try_recv`.
    Recv,
    /// `peek` and release.
    Peek,
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=max).prop_map(Op::Send),
        1 => (0..=max, proptest::option::of(0..=max)).prop_map(|(l, k)| Op::Loan(l, k.map(|k| k.min(l)))),
        3 => Just(Op::Recv),
        1 => Just(Op::Peek),
    ]
}

/// A message's bytes: its number in every byte, then its length.
fn message(n: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the mix of sends, loans, receives and peeks, the ring
    /// gives back exactly the committed messages, in order, intact, with
    /// their boundaries; `Empty` only when nothing is left.
    #[test]
    fn byte_ring_histories_match_a_queue(
        cap_log in 6u32..11,
        ops in proptest::collection::vec(op(600), 1..300),
    ) {
        let (mut tx, mut rx) = bytes::channel(1 << cap_log).expect("ring");
        let max = tx.max_frame();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut n = 0u32;
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Send(len) => {
                    let msg = message(n, len);
                    match tx.try_send(&msg) {
                        Ok(()) => { model.push_back(msg); n += 1; }
                        Err(TrySendError::Full(())) => prop_assert!(len <= max),
                        Err(TrySendError::Fault((), Fault::TooLarge { .. })) => prop_assert!(len > max),
                        Err(e) => prop_assert!(false, "send: {e}"),
                    }
                }
                Op::Loan(len, keep) => match tx.try_reserve(len) {
                    Ok(mut loan) => {
                        let msg = message(n, len);
                        loan.copy_from_slice(&msg);
                        if let Some(k) = keep {
                            loan.commit_len(k);
                            model.push_back(msg[..k].to_vec());
                            n += 1;
                        }
                    }
                    Err(TrySendError::Full(())) => prop_assert!(len <= max),
                    Err(TrySendError::Fault((), Fault::TooLarge { .. })) => prop_assert!(len > max),
                    Err(e) => prop_assert!(false, "reserve: {e}"),
                },
                Op::Recv => match rx.try_recv(&mut out) {
                    Ok(()) => {
                        let want = model.pop_front();
                        prop_assert_eq!(Some(&out), want.as_ref());
                    }
                    Err(TryRecvError::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "recv: {e}"),
                },
                Op::Peek => match rx.try_peek() {
                    Ok(view) => {
                        let want = model.pop_front();
                        prop_assert_eq!(Some(&*view), want.as_deref());
                    }
                    Err(TryRecvError::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "peek: {e}"),
                },
            }
        }
        // Nothing left behind.
        while let Some(want) = model.pop_front() {
            rx.try_recv(&mut out).expect("a message the model still holds");
            prop_assert_eq!(&out, &want);
        }
        prop_assert_eq!(rx.try_recv(&mut out), Err(TryRecvError::Empty));
    }

    /// Producers and consumers on threads, items of mixed sizes (some
    /// larger than the ring, so streamed): every item arrives exactly once,
    /// intact, and each consumer sees each producer's items in order.
    #[test]
    fn queue_runs_lose_duplicate_and_reorder_nothing(
        cap_log in 8u32..13,
        maxsize in 0usize..20,
        producers in 1usize..4,
        consumers in 1usize..4,
        per in 1usize..150,
        big_every in 2usize..40,
    ) {
        let q = Queue::<(u32, u32, Vec<u8>)>::with_capacity(maxsize, 1 << cap_log).expect("queue");
        let big = 3usize << cap_log;
        let body = |p: u32, i: u32| -> Vec<u8> {
            let len = if (i as usize).is_multiple_of(big_every) { big } else { (i as usize) % 40 };
            message(p * 1000 + i, len)
        };
        let seen = std::thread::scope(|s| {
            let puts: Vec<_> = (0..producers as u32)
                .map(|p| {
                    let q = q.clone();
                    s.spawn(move || {
                        for i in 0..per as u32 {
                            q.put((p, i, body(p, i))).expect("put");
                        }
                    })
                })
                .collect();
            let gets: Vec<_> = (0..consumers)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            match q.get_timeout(Duration::from_secs(60)) {
                                Ok(item) => got.push(item),
                                Err(RecvTimeoutError::Disconnected) => return got,
                                Err(e) => panic!("get: {e}"),
                            }
                        }
                    })
                })
                .collect();
            for h in puts {
                h.join().expect("producer");
            }
            // Consumers drain what is left, then see the close.
            q.close();
            gets.into_iter().map(|h| h.join().expect("consumer")).collect::<Vec<_>>()
        });
        let mut all = Vec::new();
        for got in &seen {
            for p in 0..producers as u32 {
                let mine: Vec<u32> = got.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                prop_assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {} out of order", p);
            }
            for (p, i, b) in got {
                prop_assert!(*b == body(*p, *i), "item {}/{} damaged", p, i);
                all.push((*p, *i));
            }
        }
        all.sort_unstable();
        let want: Vec<(u32, u32)> = (0..producers as u32)
            .flat_map(|p| (0..per as u32).map(move |i| (p, i)))
            .collect();
        prop_assert_eq!(all, want);
    }
}
