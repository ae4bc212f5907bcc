//! Property tests (proptest) of the typed rings, `spsc` and `mpmc`: random
//! single-threaded histories of every operation checked step by step against
//! a `VecDeque`, and random multi-threaded runs checked for loss,
//! duplication and per-producer order.

#![allow(clippy::cast_possible_truncation, reason = "small test counts")]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;
use shmproc_collections::mpmc;
use shmproc_collections::spsc;
use shmproc_core::{TryRecvError, TrySendError};

/// One step of a single-threaded history.
#[derive(Clone, Debug)]
enum Op {
    /// `try_send` of the next value.
    Push,
    /// `try_send_slice` of the next `n` values.
    PushSlice(usize),
    /// `reserve`, write the next value, then `commit` (or drop when false).
    Reserve(bool),
    /// `try_recv`.
    Pop,
    /// `try_recv_slice` a buffer of `n`.
    PopInto(usize),
    /// `peek`, then release.
    Peek,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Push),
        2 => (0usize..6).prop_map(Op::PushSlice),
        1 => any::<bool>().prop_map(Op::Reserve),
        3 => Just(Op::Pop),
        2 => (0usize..6).prop_map(Op::PopInto),
        1 => Just(Op::Peek),
    ]
}

/// The MPMC ring has no batches or loans: only `try_put` and `try_get`.
fn mpmc_op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Push), Just(Op::Pop)]
}

/// Values a producer sends: its id above, its sequence number below.
fn tag(producer: u64, seq: u64) -> u64 {
    producer << 32 | seq
}

/// Checks that `lists` (one per consumer) hold every `tag(p, i)` for
/// `p < producers`, `i < per` exactly once, each list in per-producer order.
fn check_runs(lists: &[Vec<u64>], producers: u64, per: u64) -> Result<(), TestCaseError> {
    for list in lists {
        for p in 0..producers {
            let mine: Vec<u64> = list.iter().filter(|v| *v >> 32 == p).copied().collect();
            prop_assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {} out of order", p);
        }
    }
    let mut all: Vec<u64> = lists.concat();
    all.sort_unstable();
    let want: Vec<u64> = (0..producers).flat_map(|p| (0..per).map(move |i| tag(p, i))).collect();
    prop_assert_eq!(all, want, "lost or duplicated");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever the mix of pushes, batches, loans, pops and peeks, the SPSC
    /// ring answers exactly what a bounded queue would: full and empty at
    /// the same moments, the same values in the same order.
    #[test]
    fn spsc_histories_match_a_queue(cap in 1usize..17, ops in proptest::collection::vec(op(), 1..200)) {
        let (mut tx, mut rx) = spsc::channel::<u64>(cap).expect("ring");
        let cap = tx.capacity();
        prop_assert_eq!(cap, cap.next_power_of_two());
        let mut model = VecDeque::new();
        let mut next = 0u64;
        let mut buf = [0u64; 6];
        for op in ops {
            let room = cap - model.len();
            match op {
                Op::Push => match tx.try_send(next) {
                    Ok(()) => {
                        prop_assert!(room > 0);
                        model.push_back(next);
                        next += 1;
                    }
                    Err(e) => prop_assert!(room == 0 && matches!(e, TrySendError::Full(v) if v == next)),
                },
                Op::PushSlice(n) => {
                    let items: Vec<u64> = (next..next + n as u64).collect();
                    let sent = match tx.try_send_slice(&items) {
                        Ok(sent) => sent,
                        Err(TrySendError::Full(())) => 0,
                        Err(e) => return Err(TestCaseError::fail(format!("try_send_slice: {e}"))),
                    };
                    prop_assert_eq!(sent, n.min(room));
                    model.extend(&items[..sent]);
                    next += sent as u64;
                }
                Op::Reserve(commit) => {
                    if let Ok(mut slot) = tx.try_reserve() {
                        prop_assert!(room > 0);
                        *slot = next;
                        if commit {
                            slot.commit();
                            model.push_back(next);
                            next += 1;
                        }
                    } else {
                        prop_assert_eq!(room, 0);
                    }
                }
                Op::Pop => match rx.try_recv() {
                    Ok(v) => prop_assert_eq!(Some(v), model.pop_front()),
                    Err(e) => prop_assert!(model.is_empty() && e == TryRecvError::Empty),
                },
                Op::PopInto(n) => {
                    let got = match rx.try_recv_slice(&mut buf[..n]) {
                        Ok(got) => got,
                        Err(TryRecvError::Empty) => 0,
                        Err(e) => return Err(TestCaseError::fail(format!("try_recv_slice: {e}"))),
                    };
                    prop_assert_eq!(got, n.min(model.len()));
                    let want: Vec<u64> = model.drain(..got).collect();
                    prop_assert_eq!(&buf[..got], &want[..]);
                }
                Op::Peek => match rx.try_peek() {
                    Ok(v) => prop_assert_eq!(Some(*v), model.pop_front()),
                    Err(e) => prop_assert!(model.is_empty() && e == TryRecvError::Empty),
                },
            }
            prop_assert_eq!(rx.len(), model.len());
        }
        while let Some(want) = model.pop_front() {
            prop_assert_eq!(rx.try_recv(), Ok(want));
        }
        prop_assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    /// The same for the MPMC ring, through two handles.
    #[test]
    fn mpmc_histories_match_a_queue(cap in 2usize..17, ops in proptest::collection::vec(mpmc_op(), 1..200)) {
        let mut tx = mpmc::ring::<u64>(cap).expect("ring");
        let mut rx = tx.clone();
        let cap = tx.capacity();
        let mut model = VecDeque::new();
        let mut next = 0u64;
        for op in ops {
            if let Op::Push = op {
                match tx.try_put(next) {
                    Ok(()) => {
                        prop_assert!(model.len() < cap);
                        model.push_back(next);
                        next += 1;
                    }
                    Err(e) => prop_assert!(model.len() == cap && matches!(e, TrySendError::Full(v) if v == next)),
                }
            } else {
                match rx.try_get() {
                    Ok(v) => prop_assert_eq!(Some(v), model.pop_front()),
                    Err(e) => prop_assert!(model.is_empty() && e == TryRecvError::Empty),
                }
            }
            prop_assert_eq!(rx.len(), model.len());
        }
    }

    /// A producer and a consumer on threads, each following its own random
    /// mix of every operation (blocking ones too): the consumer gets
    /// exactly 0, 1, 2, ...
    #[test]
    fn spsc_threads_keep_fifo(
        cap in 1usize..9,
        n in 1u64..2000,
        tx_ops in proptest::collection::vec(op(), 1..16),
        rx_ops in proptest::collection::vec(op(), 1..16),
    ) {
        let (mut tx, mut rx) = spsc::channel::<u64>(cap).expect("ring");
        let producer = std::thread::spawn(move || {
            let (mut next, mut idle) = (0, 0u32);
            for op in tx_ops.iter().cycle() {
                if next == n {
                    break;
                }
                let before = next;
                // A script of empty batches only would never push: now and
                // then a blocking push (as the consumer below does).
                let op = if idle > 10_000 { &Op::Pop } else { op };
                match *op {
                    Op::Push => next += u64::from(tx.try_send(next).is_ok()),
                    Op::PushSlice(k) => {
                        let items: Vec<u64> = (next..n.min(next + k as u64)).collect();
                        match tx.try_send_slice(&items) {
                            Ok(sent) => next += sent as u64,
                            Err(TrySendError::Full(())) => {}
                            Err(e) => panic!("try_send_slice: {e}"),
                        }
                    }
                    Op::Reserve(_) => {
                        if let Ok(mut slot) = tx.try_reserve() {
                            *slot = next;
                            slot.commit();
                            next += 1;
                        }
                    }
                    // The consumer's steps stand for a blocking push here.
                    _ => {
                        tx.send(next).expect("consumer alive");
                        next += 1;
                    }
                }
                idle = if next == before { idle + 1 } else { 0 };
            }
            tx.close();
        });
        let (mut got, mut idle) = (Vec::new(), 0u32);
        let mut buf = [0u64; 6];
        for op in rx_ops.iter().cycle() {
            let before = got.len();
            // A script of non-blocking calls only would spin forever on a
            // lost value: now and then a blocking pop, which reports the
            // producer's close once everything was read.
            let op = if idle > 10_000 { &Op::Push } else { op };
            match *op {
                Op::Pop => match rx.try_recv() {
                    Ok(v) => got.push(v),
                    Err(TryRecvError::Empty) => {}
                    Err(_) => break,
                },
                Op::PopInto(k) => match rx.try_recv_slice(&mut buf[..k]) {
                    Ok(m) => got.extend_from_slice(&buf[..m]),
                    Err(TryRecvError::Empty) => {}
                    Err(_) => break,
                },
                Op::Peek => {
                    if let Ok(v) = rx.try_peek() {
                        got.push(*v);
                    }
                }
                // The producer's steps stand for a blocking pop here.
                _ => match rx.recv() {
                    Ok(v) => got.push(v),
                    Err(_) => break,
                },
            }
            idle = if got.len() == before { idle + 1 } else { 0 };
        }
        producer.join().expect("producer");
        prop_assert_eq!(got, (0..n).collect::<Vec<_>>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Several producers and consumers on threads, each with its own mix
    /// of blocking and non-blocking calls, on a small ring: every value
    /// arrives exactly once, and each consumer sees each producer's values
    /// in order.
    #[test]
    fn mpmc_threads_lose_duplicate_and_reorder_nothing(
        cap in 2usize..9,
        producers in 1u64..4,
        consumers in 1usize..4,
        per in 1u64..400,
        blocking in proptest::collection::vec(any::<bool>(), 8),
    ) {
        let q = mpmc::ring::<u64>(cap).expect("ring");
        let taken = Mutex::new(0u64);
        let total = producers * per;
        let lists = std::thread::scope(|s| {
            for p in 0..producers {
                let (mut q, block) = (q.clone(), blocking[p as usize]);
                s.spawn(move || {
                    for i in 0..per {
                        if block {
                            q.put(tag(p, i)).expect("room eventually");
                        } else {
                            while q.try_put(tag(p, i)).is_err() {
                                std::thread::yield_now();
                            }
                        }
                    }
                });
            }
            let gets: Vec<_> = (0..consumers)
                .map(|c| {
                    let (mut q, block, taken) = (q.clone(), blocking[4 + c], &taken);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        while *taken.lock().expect("no panic") < total {
                            let v = if block {
                                q.get_timeout(Duration::from_millis(10)).ok()
                            } else {
                                q.try_get().ok()
                            };
                            match v {
                                Some(v) => {
                                    got.push(v);
                                    *taken.lock().expect("no panic") += 1;
                                }
                                None => std::thread::yield_now(),
                            }
                        }
                        got
                    })
                })
                .collect();
            gets.into_iter().map(|h| h.join().expect("consumer")).collect::<Vec<_>>()
        });
        check_runs(&lists, producers, per)?;
        prop_assert!(q.is_empty());
    }
}
