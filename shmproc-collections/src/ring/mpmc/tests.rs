//! The MPMC ring's unit tests (segments and real threads: not under loom).

use super::*;

#[test]
fn fifo_full_empty_wrap() {
    let mut q = ring::<u32>(3).expect("create");
    assert_eq!(q.capacity(), 4);
    for i in 0..4 {
        q.try_put(i).expect("room");
    }
    assert!(matches!(q.try_put(9), Err(TrySendError::Full(9))));
    for i in 0..4 {
        assert_eq!(q.try_get(), Ok(i));
    }
    assert_eq!(q.try_get(), Err(TryRecvError::Empty));
    for i in 0..if cfg!(miri) { 100 } else { 10_000 } {
        q.try_put(i).expect("room");
        assert_eq!(q.try_get(), Ok(i));
    }
    assert!(ring::<u8>(1).is_err() && ring::<u8>(MAX_CAPACITY + 1).is_err());
}

#[test]
fn many_threads_lose_and_duplicate_nothing() {
    const PER: u64 = if cfg!(miri) { 300 } else { 20_000 };
    let q = ring::<u64>(16).expect("create");
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let mut q = q.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    q.put(p << 32 | i).expect("room eventually");
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let mut q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(v) = q.get_timeout(Duration::from_millis(500)) {
                    got.push(v);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().expect("consumer"))
        .collect();
    assert_eq!(all.len() as u64, 3 * PER, "nothing lost");
    // Per producer, in order within each consumer; overall each exactly once.
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, 3 * PER, "nothing duplicated");
}

#[test]
fn a_dead_producers_unpublished_slot_becomes_a_skipped_tombstone() {
    let mut q = ring::<u32>(4).expect("create");
    q.try_put(1).expect("room");
    // Simulate a producer that claimed position 1 and died before
    // publishing: enq moved past it, owner names a process that is gone.
    let h = q.ring.header();
    h.enq.store(2, Relaxed);
    q.ring.slot(1).owner.store(0x3fff_fff0, Relaxed);
    q.try_put(3).expect("room");
    assert_eq!(q.try_get(), Ok(1));
    // Non-blocking pops watch the stuck slot for STUCK before checking.
    assert_eq!(q.get_timeout(Duration::from_secs(5)), Ok(3));
    assert_eq!(q.try_get(), Err(TryRecvError::Empty));
}

#[test]
fn a_dead_consumers_slot_is_recycled() {
    let mut q = ring::<u32>(2).expect("create");
    q.try_put(1).expect("room");
    q.try_put(2).expect("room");
    // A consumer took position 0 (deq moved) and died before recycling.
    q.ring.header().deq.store(1, Relaxed);
    q.ring.slot(0).owner.store(0x3fff_fff0, Relaxed);
    q.put_timeout(3, Duration::from_secs(5))
        .expect("the dead consumer's slot is recycled");
    assert_eq!(q.try_get(), Ok(2));
    assert_eq!(q.try_get(), Ok(3));
}

#[test]
#[cfg_attr(miri, ignore = "opens a named segment")]
fn a_named_ring_is_opened_by_name_with_its_type_checked() {
    let name = format!("shm-mpmc-test-named-{}", std::process::id());
    let mut a = Mpmc::<u64>::create_named(&name, 4).expect("create");
    assert!(matches!(
        Mpmc::<u64>::create_named(&name, 4),
        Err(SegmentError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Mpmc::<u32>::open(&name),
        Err(SegmentError::TypeMismatch { .. })
    ));
    let mut b = Mpmc::<u64>::open(&name).expect("open");
    a.try_put(5).expect("room");
    assert_eq!(b.try_get(), Ok(5));
    assert_eq!(a.try_get(), Err(TryRecvError::Empty));
    Segment::unlink(&name).expect("unlink");
    assert!(matches!(Mpmc::<u64>::open(&name), Err(SegmentError::NotFound { .. })));
}

mod scribble_tests {
    use super::super::*;
    use crate::test_util::{Rng, bounded, scribble};

    const T: Duration = Duration::from_millis(20);

    fn corrupted(r: &Result<u64, Option<Fault>>) -> bool {
        matches!(r, Err(Some(Fault::Corrupted { .. })))
    }

    fn fault(e: &RecvError) -> Option<Fault> {
        if let RecvError::Fault(f) = e {
            Some(f.clone())
        } else {
            None
        }
    }

    fn try_fault(e: &TryRecvError) -> Option<Fault> {
        if let TryRecvError::Fault(f) = e {
            Some(f.clone())
        } else {
            None
        }
    }

    fn timeout_fault(e: &RecvTimeoutError) -> Option<Fault> {
        if let RecvTimeoutError::Fault(f) = e {
            Some(f.clone())
        } else {
            None
        }
    }

    /// Slot 0's sequence word set far ahead (100 in a ring of 4): every
    /// operation reports it instead of spinning forever (issue 9).
    #[test]
    fn a_sequence_far_ahead_is_corrupted_not_a_hang() {
        for op in 0..6 {
            let mut q = ring::<u64>(4).expect("create");
            q.ring.slot(0).seq.store(100, Relaxed);
            let r = bounded("op on a scribbled ring", move || match op {
                0 => q.try_get().map_err(|e| try_fault(&e)),
                1 => q.get_timeout(T).map_err(|e| timeout_fault(&e)),
                2 => q.get().map_err(|e| fault(&e)),
                3 => q.try_put(1).map(|()| 0).map_err(|e| e.fault().cloned()),
                4 => q.put_timeout(1, T).map(|()| 0).map_err(|e| e.fault().cloned()),
                _ => q.put(1).map(|()| 0).map_err(|e| e.fault().cloned()),
            });
            assert!(corrupted(&r), "op {op}: {r:?}");
        }
    }

    /// A sequence word a little behind (inside the lap, but not a value a
    /// legal history leaves there) is reported too, not waited on forever.
    #[test]
    fn a_sequence_inside_the_lap_is_corrupted() {
        let mut q = ring::<u64>(4).expect("create");
        q.ring.slot(0).seq.store(u32::MAX - 1, Relaxed);
        let r = bounded("get", move || {
            (q.get().map_err(|e| fault(&e)), q.put(1).map_err(|e| e.fault().cloned()))
        });
        assert!(corrupted(&r.0), "{r:?}");
        assert!(matches!(r.1, Err(Some(Fault::Corrupted { .. }))), "{r:?}");
    }

    /// An owner word naming a live process (ours) that never moves: a
    /// `try_` call reports Full or Empty at once instead of waiting for it,
    /// a blocking one gives up after `CLAIM_BOUND` with an error naming the
    /// owner.
    #[test]
    #[cfg_attr(miri, ignore = "spins for CLAIM_BOUND (1 s): too slow to interpret")]
    fn a_claim_that_never_moves_is_corrupted_not_a_hang() {
        let mut q = ring::<u64>(4).expect("create");
        q.ring.slot(0).owner.store(sync::owner_id(), Relaxed);
        assert!(matches!(q.try_put(7), Err(TrySendError::Full(7))));
        let mut q2 = q.clone();
        q2.ring.slot(0).owner.store(0, Relaxed);
        q2.try_put(5).expect("room");
        q2.ring.slot(0).owner.store(sync::owner_id(), Relaxed);
        assert!(matches!(q2.try_get(), Err(TryRecvError::Empty)));
        q2.ring.slot(0).owner.store(0, Relaxed);
        assert_eq!(q2.try_get().expect("the message"), 5);
        q.ring.slot(1).owner.store(sync::owner_id(), Relaxed);
        let r = bounded("put", move || q.put(7).map_err(|e| e.fault().cloned()));
        match r {
            Err(Some(Fault::Stalled { pid, waited, .. })) => {
                assert_eq!(pid, sync::cached_pid());
                assert!(waited >= CLAIM_BOUND, "{waited:?}");
            }
            other => panic!("expected a stuck claim to be reported, got {other:?}"),
        }
    }

    /// Enqueue/dequeue positions scribbled: reported or harmless, never a hang.
    #[test]
    fn scribbled_positions_never_hang() {
        for (enq, deq) in [(0, 3), (1000, 0), (0, 1000), (5, 5), (u32::MAX, 0)] {
            let mut q = ring::<u64>(4).expect("create");
            q.try_put(1).expect("room");
            let h = q.ring.header();
            h.enq.store(enq, Relaxed);
            h.deq.store(deq, Relaxed);
            bounded("ops", move || {
                let _ = q.try_get();
                let _ = q.get_timeout(T);
                let _ = q.try_put(2);
                let _ = q.put_timeout(3, T);
            });
        }
    }

    /// Random words of the header, the slot words and the values scribbled
    /// (seeded): every timed or non-blocking operation returns.
    #[test]
    fn random_scribbles_never_hang() {
        let rounds = if cfg!(miri) { 4 } else { 300 };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..rounds {
            let mut q = ring::<u64>(4).expect("create");
            for i in 0..rng.below(5) {
                q.try_put(i as u64).expect("room");
            }
            let _ = q.try_get();
            let (base, len) = (q.ring.seg.payload().as_ptr(), q.ring.seg.payload_len());
            // Header positions, slot words and values: skip the padding.
            let words = 1 + rng.below(4);
            // SAFETY: the payload is ours, 128-aligned, `len` bytes, and
            // every access to it is atomic.
            unsafe { scribble(base.wrapping_add(HEADER - 256), len - (HEADER - 256), words, &mut rng) };
            let seed = rng.next();
            bounded(&format!("round {round}"), move || {
                let mut r = Rng(seed | 1);
                for _ in 0..8 {
                    let _ = match r.below(4) {
                        0 => q.try_get().map_err(|e| e.to_string()),
                        1 => q.get_timeout(T).map_err(|e| e.to_string()),
                        2 => q.try_put(9).map(|()| 0).map_err(|e| e.to_string()),
                        _ => q.put_timeout(9, T).map(|()| 0).map_err(|e| e.to_string()),
                    };
                }
            });
        }
    }
}
