#[allow(clippy::cast_possible_truncation, reason = "test byte patterns")]
mod basics {
    use super::super::frame::*;
    use super::super::*;
    use shmproc_core::sys::Deadline;
    use shmproc_core::{Fault, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    fn bytes_of(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }

    #[test]
    fn messages_keep_their_boundaries_across_wraps() {
        let (mut tx, mut rx) = channel(256).expect("ring");
        let mut out = Vec::new();
        for round in 0..200 {
            let len = round % 60;
            tx.try_send(&bytes_of(round, len)).expect("room");
            if round % 3 == 0 {
                tx.try_send(&[]).expect("empty messages are messages");
            }
            rx.try_recv(&mut out).expect("a message");
            assert_eq!(out, bytes_of(round, len));
            if round % 3 == 0 {
                rx.try_recv(&mut out).expect("the empty one");
                assert!(out.is_empty());
            }
        }
        assert_eq!(rx.try_recv(&mut out), Err(TryRecvError::Empty));
    }

    #[test]
    fn full_too_large_and_loans() {
        let (mut tx, mut rx) = channel(64).expect("ring");
        assert_eq!(tx.max_frame(), 24);
        assert!(matches!(
            tx.try_send(&[0; 25]),
            Err(TrySendError::Fault((), Fault::TooLarge { len: 25, max: 24 }))
        ));
        tx.try_send(&[1; 24]).expect("one frame");
        tx.try_send(&[2; 24]).expect("two frames fill 64 bytes");
        assert!(matches!(tx.try_send(&[]), Err(TrySendError::Full(()))));
        assert!(tx.try_reserve(1).is_err_and(|e| e.is_full()));
        assert!(
            tx.reserve_timeout(1, Duration::from_millis(5))
                .is_err_and(|e| e.is_timeout())
        );
        {
            let view = rx.try_peek().expect("in place");
            assert_eq!(&*view, &[1; 24]);
        }
        let mut loan = tx.try_reserve(16).expect("room again");
        loan[..3].copy_from_slice(b"abc");
        loan.commit_len(3);
        let mut out = Vec::new();
        rx.recv(&mut out).expect("second");
        assert_eq!(out, [2; 24]);
        rx.recv(&mut out).expect("loaned");
        assert_eq!(out, b"abc");
        {
            let _loan = tx.try_reserve(8).expect("a loan dropped without commit sends nothing");
        }
        assert_eq!(rx.try_recv(&mut out), Err(TryRecvError::Empty));
    }

    #[test]
    fn large_messages_stream_through_a_small_ring() {
        let (mut tx, mut rx) = channel(1024).expect("ring");
        // Under Miri, one streamed message (4096 > 1024) is enough.
        let sizes: &[usize] = if cfg!(miri) {
            &[0, 1, 503, 504, 505, 4096]
        } else {
            &[0, 1, 503, 504, 505, 4096, 100_000, 3 << 20]
        };
        std::thread::scope(|s| {
            s.spawn(move || {
                for (i, &n) in sizes.iter().enumerate() {
                    tx.send(&bytes_of(i, n)).expect("send");
                }
                tx.close();
            });
            let mut out = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                rx.recv(&mut out).expect("recv");
                assert_eq!(out.len(), n);
                assert!(out == bytes_of(i, n), "message {i} intact");
            }
            assert_eq!(rx.recv(&mut out), Err(RecvError::Disconnected));
        });
    }

    #[test]
    fn timeouts_close_and_poll() {
        let (mut tx, mut rx) = channel(64).expect("ring");
        let mut out = Vec::new();
        assert_eq!(
            rx.recv_timeout(&mut out, Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout(Duration::from_millis(20)))
        );
        assert!(!rx.readable(Some(Deadline::after(Duration::from_millis(10)))));
        assert_eq!(
            rx.peek_timeout(Duration::from_millis(5)).map(|l| l.len()),
            Err(RecvTimeoutError::Timeout(Duration::from_millis(5)))
        );
        tx.send(b"x").expect("send");
        assert!(rx.readable(Some(Deadline::after(Duration::ZERO))));
        assert!(rx.readable(None), "readable consumes nothing");
        tx.send(&[0; 24]).expect("fill");
        assert!(matches!(
            tx.send_timeout(&[0; 24], Duration::from_millis(20)),
            Err(SendTimeoutError::Timeout((), d)) if d == Duration::from_millis(20)
        ));
        tx.close();
        assert_eq!(rx.peek().map(|l| l.to_vec()), Ok(b"x".to_vec()), "drains after close");
        rx.recv(&mut out).expect("a dropped RecvLoan consumed the first");
        assert_eq!(out, [0; 24]);
        assert_eq!(rx.recv(&mut out), Err(RecvError::Disconnected));
        assert!(rx.readable(None), "a closed peer reads as readable");
        rx.close();
        assert!(matches!(tx.try_send(b"y"), Err(TrySendError::Disconnected(()))));
    }

    #[test]
    fn scribbled_frames_are_reported_and_nothing_moves() {
        let (mut tx, mut rx) = channel(128).expect("ring");
        tx.try_send(b"hello").expect("room");
        let raw = rx.ring.raw;
        // The first frame's two header words, as a peer could scribble them.
        let scribble = |len: u32, word: u32| raw.put_header_words(0, len, word);
        scribble(1000, TAG | Kind::Whole as u32);
        let mut out = Vec::new();
        assert!(matches!(
            rx.try_recv(&mut out),
            Err(TryRecvError::Fault(Fault::Corrupted { .. }))
        ));
        assert!(
            matches!(rx.try_recv(&mut out), Err(TryRecvError::Fault(Fault::Corrupted { .. }))),
            "still there"
        );
        scribble(5, 0xdead_beef);
        assert!(matches!(
            rx.try_recv(&mut out),
            Err(TryRecvError::Fault(Fault::Corrupted { .. }))
        ));
        scribble(5, TAG | 0x4d);
        assert!(matches!(
            rx.try_recv(&mut out),
            Err(TryRecvError::Fault(Fault::Corrupted { .. }))
        ));
        // Restore: the message is intact.
        scribble(5, TAG | Kind::Whole as u32);
        rx.try_recv(&mut out).expect("intact");
        assert_eq!(out, b"hello");
        // A tail beyond the ring.
        raw.header().tail.store(4096, Relaxed);
        assert!(matches!(
            rx.try_recv(&mut out),
            Err(TryRecvError::Fault(Fault::Corrupted { .. }))
        ));
    }

    #[test]
    fn remnants_of_dead_readers_and_aborted_streams_are_skipped() {
        let (mut tx, mut rx) = channel(256).expect("ring");
        let raw = tx.ring.raw;
        tx.claim();
        let mut c = tx.c;
        let never = |_: &RawRing, _: &mut WriteCursor, _: u32, _: bool| -> Result<(), Fail> { Err(Fail::Full) };
        raw.put_frame(&mut c, Kind::Middle, &[], b"left", &mut { never }, &mut || {}, true)
            .expect("room");
        raw.put_frame(&mut c, Kind::Last, &[], b"over", &mut { never }, &mut || {}, true)
            .expect("room");
        raw.put_frame(
            &mut c,
            Kind::First,
            &200u64.to_le_bytes(),
            b"part",
            &mut { never },
            &mut || {},
            false,
        )
        .expect("room");
        raw.abort(&mut c, never).expect("room");
        raw.put_frame(&mut c, Kind::Whole, &[], b"real", &mut { never }, &mut || {}, false)
            .expect("room");
        tx.c = c;
        let mut out = Vec::new();
        rx.try_recv(&mut out).expect("the real message");
        assert_eq!(out, b"real");
    }
}

#[cfg(test)]
mod scribble_tests {
    use super::super::*;
    use crate::test_util::{Rng, bounded, scribble};
    use shmproc_core::{Fault, TryRecvError};
    use std::time::Duration;

    /// A frame header's length word scribbled past the ring: reported, and
    /// never used as an offset.
    #[test]
    fn a_frame_length_past_the_ring_is_corrupted() {
        for bad in [u32::MAX, 1 << 20, 250, 57] {
            let (mut tx, mut rx) = channel(256).expect("ring");
            tx.try_send(&[7; 16]).expect("room");
            let data = rx.ring.raw.at(0).cast::<u32>().as_ptr();
            // SAFETY: the first frame header's length word, in the data
            // area; an atomic store, as every access to it is.
            unsafe { shmproc_core::atomic::copy::store(data, bad) };
            let mut out = Vec::new();
            let r = rx.try_recv(&mut out);
            assert!(
                matches!(r, Err(TryRecvError::Fault(Fault::Corrupted { .. }))),
                "len {bad}: {r:?}"
            );
            assert!(matches!(
                rx.try_peek().map(|v| v.len()),
                Err(TryRecvError::Fault(Fault::Corrupted { .. }))
            ));
        }
    }

    /// Index words and frames scribbled, seeded: every non-blocking or
    /// timed operation returns, none hangs or panics.
    #[test]
    fn random_scribbles_never_hang() {
        let rounds = if cfg!(miri) { 4 } else { 300 };
        let t = Duration::from_millis(20);
        let mut rng = Rng(0x5851_f42d_4c95_7f2d);
        for round in 0..rounds {
            let (mut tx, mut rx) = channel(128).expect("ring");
            for i in 0..rng.below(6) {
                let _ = tx.try_send(&[u8::try_from(i).unwrap_or(0); 9]);
            }
            let mut out = Vec::new();
            let _ = rx.try_recv(&mut out);
            let seg = &tx.ring.seg;
            let (base, len) = (seg.payload().as_ptr().wrapping_add(128), seg.payload_len() - 128);
            // SAFETY: inside the payload (index lines and data), 128-aligned;
            // every access to it is atomic.
            unsafe { scribble(base, len, 1 + rng.below(4), &mut rng) };
            let seed = rng.next();
            bounded(&format!("round {round}"), move || {
                let mut r = Rng(seed | 1);
                let mut out = Vec::new();
                for _ in 0..8 {
                    let _ = match r.below(5) {
                        0 => rx.try_recv(&mut out).is_ok(),
                        1 => rx.recv_timeout(&mut out, t).is_ok(),
                        2 => tx.try_send(&[1; 12]).is_ok(),
                        3 => tx.send_timeout(&[2; 20], t).is_ok(),
                        _ => rx.try_peek().map(|v| assert!(v.len() <= 128)).is_ok(),
                    };
                }
            });
        }
    }
}

/// A named ring's ends are opened by name, each refused while another
/// live process holds it; another object's name is a type mismatch.
#[test]
#[cfg_attr(miri, ignore = "opens named segments in /dev/shm")]
fn named_ends_are_taken_by_name_and_refused_while_held() {
    use std::sync::atomic::Ordering::Relaxed;

    use shmproc_core::{RawValue, Segment, SegmentError};

    use super::{ByteConsumer, ByteProducer, OpenError, create_named};

    let name = format!("shmproc-collections-test-bytes-{}", std::process::id());
    let (unused, held) = create_named(&name, 256).expect("named ring");
    drop(unused);
    let mut tx = ByteProducer::open(&name).expect("the writing end was never used");
    tx.send(b"hi").expect("send");
    // A live process other than ours holds the reading end (our parent
    // stands in for one).
    // The word holds an owner id: the pid with a tag of its start time.
    let parent = std::os::unix::process::parent_id();
    let parent_id = shmproc_sync::park::owner_id_of(parent).expect("the parent runs");
    held.ring.raw.header().reader.store(parent_id, Relaxed);
    match ByteConsumer::open(&name) {
        Err(OpenError::Held {
            end: "reading", pid, ..
        }) => assert_eq!(pid, parent),
        other => panic!("{other:?}"),
    }
    held.ring.raw.header().reader.store(0, Relaxed);
    let mut rx = ByteConsumer::open(&name).expect("free again");
    let mut out = Vec::new();
    rx.recv(&mut out).expect("the message");
    assert_eq!(out, b"hi");
    let other = format!("{name}-value");
    let _value = RawValue::<u64>::create_named(&other, 1).expect("value");
    match ByteConsumer::open(&other) {
        Err(OpenError::Segment(SegmentError::TypeMismatch { .. })) => {}
        other => panic!("{other:?}"),
    }
    Segment::unlink(&name).expect("unlink");
    Segment::unlink(&other).expect("unlink");
}
