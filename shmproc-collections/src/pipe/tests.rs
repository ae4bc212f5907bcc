//! Unit tests of pipes.

#![allow(clippy::cast_possible_truncation, reason = "test byte patterns")]
use super::*;

#[test]
fn duplex_both_ways_with_boundaries() {
    let (mut a, mut b) = Pipe::with_capacity(true, 256).expect("pipe");
    a.send_bytes(b"one").expect("send");
    a.send_bytes(b"").expect("empty");
    a.send_bytes_range(b"0123456789", 2, Some(3)).expect("range");
    a.send_bytes_range(b"0123456789", 7, None).expect("rest");
    assert!(matches!(
        a.send_bytes_range(b"abc", 2, Some(2)),
        Err(PipeError::OutOfRange { .. })
    ));
    assert!(matches!(
        a.send_bytes_range(b"abc", 4, None),
        Err(PipeError::OutOfRange { .. })
    ));
    assert_eq!(b.recv_bytes().expect("one"), b"one");
    assert_eq!(b.recv_bytes().expect("empty"), b"");
    assert_eq!(b.recv_bytes().expect("range"), b"234");
    assert_eq!(b.recv_bytes().expect("rest"), b"789");
    b.send(&vec![1u16, 2, 3]).expect("send");
    assert_eq!(a.recv::<Vec<u16>>().expect("recv"), [1, 2, 3]);
}

#[test]
fn one_way_pipes_refuse_the_other_direction() {
    let (mut r, mut w) = Pipe::new(false).expect("pipe");
    assert!(r.readable() && !r.writable() && w.writable() && !w.readable());
    assert_eq!(r.send_bytes(b"x"), Err(PipeError::NotWritable));
    assert_eq!(w.recv_bytes(), Err(PipeError::NotReadable));
    assert_eq!(w.poll(), Err(PipeError::NotReadable));
    w.send_bytes(b"x").expect("send");
    assert_eq!(r.recv_bytes().expect("recv"), b"x");
}

#[test]
fn short_buffers_long_messages_and_poll() {
    let (mut a, mut b) = Pipe::new(true).expect("pipe");
    assert_eq!(b.poll(), Ok(false));
    assert_eq!(b.poll_timeout(Duration::from_millis(5)), Ok(false));
    assert_eq!(b.try_recv::<u8>(), Err(PipeError::Empty));
    assert_eq!(
        b.recv_bytes_timeout(Duration::from_millis(5)),
        Err(PipeError::Timeout(Duration::from_millis(5)))
    );
    a.send_bytes(b"hello world").expect("send");
    assert_eq!(b.poll(), Ok(true));
    let mut small = [0u8; 4];
    assert_eq!(
        b.recv_bytes_into(&mut small, 0),
        Err(PipeError::BufferTooShort(b"hello world".to_vec())),
        "the message is handed over"
    );
    a.send_bytes(b"hi").expect("send");
    assert_eq!(b.recv_bytes_into(&mut small, 2), Ok(2));
    assert_eq!(&small[2..], b"hi");
    a.send_bytes(&[0; 100]).expect("send");
    assert_eq!(b.recv_bytes_max(10), Err(PipeError::TooLong { len: 100, max: 10 }));
    a.send_bytes(&[1; 10]).expect("send");
    assert_eq!(b.recv_bytes_max(10).expect("fits"), [1; 10]);
    a.send(&1u8).expect("send");
    assert!(matches!(b.recv::<String>(), Err(PipeError::Fault(Fault::Decode(_)))));
}

#[test]
fn large_messages_round_trip_through_small_rings() {
    let (mut a, mut b) = Pipe::with_capacity(true, 4096).expect("pipe");
    let big: Vec<u8> = (0..if cfg!(miri) { 20_000 } else { 16usize << 20 })
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    std::thread::scope(|s| {
        s.spawn(move || {
            let echo = b.recv_bytes().expect("recv");
            b.send_bytes(&echo).expect("echo");
        });
        a.send_bytes(&big).expect("send");
        assert!(a.recv_bytes().expect("echo") == big, "16 MiB intact both ways");
    });
}

#[test]
fn close_ends_the_stream_after_what_was_sent() {
    let (mut a, mut b) = Pipe::new(true).expect("pipe");
    for i in 0..3u8 {
        a.send(&i).expect("send");
    }
    a.close();
    assert!(a.closed());
    assert_eq!(a.send(&9u8), Err(PipeError::Closed));
    let mut got = Vec::new();
    while b.poll_timeout(Duration::from_secs(10)).expect("readable") {
        match b.recv::<u8>() {
            Ok(x) => got.push(x),
            Err(PipeError::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(b.send(&1u8), Err(PipeError::BrokenPipe));
}

#[test]
#[cfg_attr(miri, ignore = "opens named segments in /dev/shm")]
fn named_pipes_open_by_end() {
    let name = format!("shmproc-collections-test-pipe-{}", std::process::id());
    let (first, second) = Pipe::create_named(&name, true).expect("named pipe");
    drop((first, second));
    let mut a = Connection::open(&name, PipeEnd::First).expect("first end");
    let mut b = Connection::open(&name, PipeEnd::Second).expect("second end");
    a.send(&1u32).expect("send");
    assert_eq!(b.recv::<u32>(), Ok(1));
    b.send(&2u32).expect("send back");
    assert_eq!(a.recv::<u32>(), Ok(2));
    Pipe::unlink(&name).expect("unlink");
    let one_way = format!("{name}-one-way");
    drop(Pipe::create_named(&one_way, false).expect("one-way"));
    let rx = Connection::open(&one_way, PipeEnd::First).expect("receiving end");
    assert!(rx.readable() && !rx.writable());
    Pipe::unlink(&one_way).expect("unlink");
}
