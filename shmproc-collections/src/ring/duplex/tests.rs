//! The duplex channel's unit tests (segments and real threads: not under loom).

use super::*;

#[test]
fn cells_fit_the_line_or_are_not_used() {
    assert_eq!(cells::<u64, u64>(), Some([32, 40]));
    assert_eq!(cells::<u8, u64>(), Some([32, 40]));
    assert_eq!(cells::<[u64; 2], [u64; 2]>(), Some([32, 48]));
    assert_eq!(cells::<[u64; 2], [u64; 3]>(), None);
    let (a, b) = channel::<[u8; 40], u8>(4).expect("create");
    assert!(!a.uses_mailbox() && !b.uses_mailbox());
}

#[test]
fn ping_pong_goes_through_the_mailbox_and_keeps_order() {
    let (mut a, mut b) = channel::<u64, u32>(4).expect("create");
    assert!(a.uses_mailbox());
    for i in 0..100u64 {
        a.try_send(i).expect("room");
        assert_eq!(b.try_recv(), Ok(i));
        b.try_send(u32::try_from(i).expect("small") * 2).expect("room");
        assert_eq!(a.try_recv(), Ok(u32::try_from(i).expect("small") * 2));
    }
    assert_eq!(a.mailed, 100, "every request went through the cell");
    assert_eq!(a.tx.tail(), 0, "and none through the ring");
    assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn bursts_mix_cell_and_ring_in_order() {
    let (mut a, mut b) = channel::<u64, u64>(4).expect("create");
    let mut next = 0u64;
    let mut expect = 0u64;
    for burst in [1usize, 2, 5, 3, 1, 1, 4, 5, 2] {
        let mut sent = 0;
        while sent < burst {
            match a.try_send(next) {
                Ok(()) => {
                    next += 1;
                    sent += 1;
                }
                Err(TrySendError::Full(_)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        loop {
            match b.try_recv() {
                Ok(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // The sender idles: it sees its ring drained again.
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
    }
    assert_eq!(expect, next);
    // At most the ring's 4 plus the cell's 1 fit at once.
    for i in 0..5 {
        a.try_send(i).expect("room");
    }
    assert!(matches!(a.try_send(9), Err(TrySendError::Full(9))));
}

#[test]
fn close_drains_then_disconnects_both_ways() {
    let (mut a, mut b) = channel::<u64, u64>(4).expect("create");
    a.try_send(1).expect("room");
    a.try_send(2).expect("room");
    a.close();
    assert_eq!(b.recv(), Ok(1));
    assert_eq!(b.recv(), Ok(2));
    assert_eq!(b.recv(), Err(RecvError::Disconnected));
    assert!(matches!(b.try_send(3), Err(TrySendError::Disconnected(3))));
    assert!(matches!(b.send(3), Err(SendError::Disconnected(3))));
    let t = Duration::from_millis(5);
    assert!(matches!(b.send_timeout(3, t), Err(SendTimeoutError::Disconnected(3))));
}

#[test]
fn blocking_ping_pong_and_streams_between_threads() {
    // Miri interprets: a few hundred still cross every batch size.
    const N: u64 = if cfg!(miri) { 300 } else { 100_000 };
    let (mut a, mut echo) = channel::<u64, u64>(8).expect("create");
    let t = Duration::from_millis(5);
    assert_eq!(a.recv_timeout(t), Err(RecvTimeoutError::Timeout(t)));
    let thread = std::thread::spawn(move || {
        // Echo, sometimes answering a batch at once.
        loop {
            match echo.recv() {
                Ok(v) => echo.send(v + 1).expect("peer alive"),
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
    });
    let mut i = 0;
    while i < N {
        let k = (i % 7 + 1).min(N - i);
        for j in 0..k {
            a.send(i + j).expect("peer alive");
        }
        for j in 0..k {
            assert_eq!(a.recv(), Ok(i + j + 1));
        }
        i += k;
    }
    a.close();
    thread.join().expect("echo thread");
}

#[test]
fn scribbled_mailbox_words_are_reported_not_used() {
    let (mut a, mut b) = channel::<u64, u64>(4).expect("create");
    a.try_send(1).expect("room");
    let m = a.m();
    m.word[0].store(7 << 32, Relaxed);
    let e = b.try_recv().expect_err("corrupted");
    assert!(
        matches!(&e, TryRecvError::Fault(Fault::Corrupted { object: "duplex channel", found, .. }) if found == "7"),
        "{e:?}"
    );
    m.word[0].store(1 << 32 | 0x64, Relaxed);
    assert!(matches!(
        b.try_recv(),
        Err(TryRecvError::Fault(Fault::Corrupted { .. }))
    ));
    m.taken[0].store(50, Relaxed);
    assert!(matches!(
        a.try_send(2),
        Err(TrySendError::Fault(2, Fault::Corrupted { .. }))
    ));
}

#[test]
fn an_end_moved_to_another_owner_resumes_its_counts() {
    let (mut a, mut b) = channel::<u64, u64>(4).expect("create");
    a.try_send(1).expect("room");
    assert_eq!(b.try_recv(), Ok(1));
    a.try_send(2).expect("room");
    // A fresh handle of the same end (as a child process gets one).
    let (bytes, fds) = shmproc_core::handle::encode(&b).expect("serialise");
    let fds = (fds.into_iter())
        // SAFETY: the descriptors belong to `b`'s segments, alive here.
        .map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned())
        .collect::<Result<Vec<_>, _>>()
        .expect("dup");
    drop(b);
    let mut b: Duplex<u64, u64> = shmproc_core::handle::decode(&bytes, fds).expect("deserialise");
    assert_eq!(b.try_recv(), Ok(2));
    a.try_send(3).expect("room");
    assert_eq!(b.try_recv(), Ok(3));
    assert_eq!(b.try_recv(), Err(TryRecvError::Empty));
}

#[test]
#[cfg_attr(miri, ignore = "opens named segments")]
fn a_named_channel_end_is_opened_by_name_and_claimed() {
    let name = format!("shm-duplex-test-named-{}", std::process::id());
    let (mut first, second) = create_named::<u32, u64>(&name, 4).expect("create");
    assert!(create_named::<u32, u64>(&name, 4).is_err(), "the name is taken");
    // Unused, so that it may be opened (by another program, or here).
    drop(second);
    assert!(matches!(
        Duplex::<u8, u8>::open(&name),
        Err(OpenError::Segment(SegmentError::TypeMismatch { .. }))
    ));
    let mut second = Duplex::<u64, u32>::open(&name).expect("the second end is free");
    first.try_send(7).expect("room");
    assert_eq!(second.try_recv(), Ok(7));
    second.try_send(8).expect("room");
    assert_eq!(first.try_recv(), Ok(8));
    // Both ends are held by this live process now.
    assert!(matches!(Duplex::<u64, u32>::open(&name), Err(OpenError::Held { .. })));
    assert!(matches!(Duplex::<u32, u64>::open(&name), Err(OpenError::Held { .. })));
    unlink(&name).expect("unlink");
    assert!(matches!(
        Duplex::<u64, u32>::open(&name),
        Err(OpenError::Segment(SegmentError::NotFound { .. }))
    ));
}

mod scribble_tests {
    use super::super::*;
    use crate::test_util::{Rng, bounded, scribble};

    /// The mailbox words and cells scribbled, seeded: every non-blocking or
    /// timed operation of both ends returns, none hangs or panics.
    #[test]
    fn random_scribbles_never_hang() {
        let rounds = if cfg!(miri) { 4 } else { 300 };
        let t = Duration::from_millis(20);
        let mut rng = Rng(0x1405_7b7e_f767_814f);
        for round in 0..rounds {
            let (mut a, mut b) = channel::<u64, u32>(4).expect("create");
            for i in 0..rng.below(4) {
                let _ = a.try_send(i as u64);
                if i % 2 == 0 {
                    let _ = b.try_recv();
                }
            }
            // SAFETY: the mailbox's MAIL_LEN bytes, 128-aligned; every
            // access to them is atomic.
            unsafe { scribble(a.base.as_ptr(), MAIL_LEN, 1 + rng.below(4), &mut rng) };
            let seed = rng.next();
            bounded(&format!("round {round}"), move || {
                let mut r = Rng(seed | 1);
                for _ in 0..8 {
                    let _ = match r.below(6) {
                        0 => b.try_recv().map_err(|e| e.to_string()),
                        1 => b.recv_timeout(t).map_err(|e| e.to_string()),
                        2 => a.try_send(9).map(|()| 0).map_err(|e| e.to_string()),
                        3 => a.send_timeout(9, t).map(|()| 0).map_err(|e| e.to_string()),
                        4 => a.recv_timeout(t).map(u64::from).map_err(|e| e.to_string()),
                        _ => b.try_send(3).map(|()| 0).map_err(|e| e.to_string()),
                    };
                }
            });
        }
    }
}
