//! The two ends of each peer case of [`crate::groups::peers`], behind three small
//! traits that the drivers of [`crate::peers::drive`] walk: [`Echo`] for
//! round trips, [`Feed`] and [`Drain`] for one-way streams.
//!
//! Every end is handed to its process or thread as a recipe (an
//! [`EchoEnd`], [`FeedEnd`] or [`DrainEnd`]: a `Send` closure) and built
//! there, because some peers (iceoryx2) must create their ports in the
//! process that uses them, and their ports are not `Send`.
//!
//! Here: the cache-line floor, `shmproc::spsc` rings (busy-polling or
//! blocking, `u64` or `[u64; K]` by loan), byte streams (a pipe or a Unix
//! socketpair, `K` words per message), ipc-channel and crossbeam-channel.
//! iceoryx2 is in [`crate::peers::ice`].
//!
//! A message `s` of `K` words holds `s` in every word; receivers check
//! every word, so every byte is written and read on both sides.
//!
//! # Memory ordering
//!
//! The floor's turns are stored with Release and read with Acquire; every
//! other peer orders itself.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Release};

use shmproc::ShmSafe;
use shmproc::duplex::{self, Duplex};
use shmproc::spsc::{self, Consumer, Producer};

use crate::groups::ring::trips::{pop_ours, push_ours, recv_duplex, send_duplex};
use crate::harness::shared_map::{AtomicU64, Padded, SharedMap};
use crate::peers::hand_ring::spin_until;

/// One side of a round trip.
pub trait Echo {
    /// Called on both sides once both have built their ends, before the
    /// first message (iceoryx2 attaches its ports to each other here).
    fn connect(&mut self) {}
    /// The asking side: sends `t`, waits for the answer and returns it.
    fn ask(&mut self, t: u64) -> u64;
    /// The answering side: waits for one message and sends it back.
    fn answer(&mut self);
}

/// The sending side of a one-way stream.
pub trait Feed {
    /// Called on both sides once both have built their ends, before the
    /// first message (iceoryx2 attaches its ports to each other here).
    fn connect(&mut self) {}
    /// Sends messages `from..from + count`.
    fn send(&mut self, from: u64, count: u64);
}

/// The receiving side of a one-way stream.
pub trait Drain {
    /// Called on both sides once both have built their ends, before the
    /// first message (iceoryx2 attaches its ports to each other here).
    fn connect(&mut self) {}
    /// Receives messages `from..from + count`; returns how many arrived
    /// damaged or out of order.
    fn receive(&mut self, from: u64, count: u64) -> u64;
}

/// A carrier of one `u64` at a time each way: every such carrier echoes
/// (see the blanket [`Echo`] impl) and, wrapped in [`OneWay`], streams.
pub trait Word {
    /// As [`Echo::connect`].
    fn connect(&mut self) {}
    /// Sends `v`.
    fn put(&mut self, v: u64);
    /// Waits for a message and returns it.
    fn take(&mut self) -> u64;
}

impl<W: Word> Echo for W {
    fn connect(&mut self) {
        Word::connect(self);
    }

    fn ask(&mut self, t: u64) -> u64 {
        self.put(t);
        self.take()
    }

    fn answer(&mut self) {
        let v = self.take();
        self.put(v);
    }
}

/// A [`Word`] carrier as one side of a one-way stream of `u64`s.
#[derive(Debug)]
pub struct OneWay<W>(pub W);

impl<W: Word> Feed for OneWay<W> {
    fn connect(&mut self) {
        self.0.connect();
    }

    fn send(&mut self, from: u64, count: u64) {
        (from..from + count).for_each(|s| self.0.put(s));
    }
}

impl<W: Word> Drain for OneWay<W> {
    fn connect(&mut self) {
        self.0.connect();
    }

    fn receive(&mut self, from: u64, count: u64) -> u64 {
        (from..from + count).map(|s| u64::from(self.0.take() != s)).sum()
    }
}

/// A recipe for an [`Echo`], run in the process or thread that uses it.
pub type EchoEnd = Box<dyn FnOnce() -> Box<dyn Echo> + Send>;
/// A recipe for a [`Feed`].
pub type FeedEnd = Box<dyn FnOnce() -> Box<dyn Feed> + Send>;
/// A recipe for a [`Drain`].
pub type DrainEnd = Box<dyn FnOnce() -> Box<dyn Drain> + Send>;

/// An end that is ready as it is.
pub fn echo<E: Echo + Send + 'static>(e: E) -> EchoEnd {
    Box::new(move || Box::new(e))
}

/// See [`echo`].
pub fn feed<F: Feed + Send + 'static>(f: F) -> FeedEnd {
    Box::new(move || Box::new(f))
}

/// See [`echo`].
pub fn drain<D: Drain + Send + 'static>(d: D) -> DrainEnd {
    Box::new(move || Box::new(d))
}

/// Whether a message's words all hold `s`.
#[inline]
pub fn intact(words: impl IntoIterator<Item = u64>, s: u64) -> bool {
    words.into_iter().all(|w| w == s)
}

/// The cache-line floor: one word both sides flip, no payload.
#[derive(Debug)]
pub struct Floor {
    word: Arc<SharedMap<Padded<AtomicU64>>>,
    turn: u64,
}

/// Both sides of the floor (asker first).
///
/// # Errors
///
/// If the mapping fails.
pub fn floor() -> io::Result<(EchoEnd, EchoEnd)> {
    let word = Arc::new(SharedMap::<Padded<AtomicU64>>::new()?);
    let side = |word| Floor { word, turn: 0 };
    Ok((echo(side(Arc::clone(&word))), echo(side(word))))
}

impl Echo for Floor {
    fn ask(&mut self, t: u64) -> u64 {
        self.turn += 1;
        let k = self.turn;
        // Release/Acquire: pair with the answering side's load and store.
        self.word.store(2 * k - 1, Release);
        spin_until(|| (self.word.load(Acquire) == 2 * k).then_some(t))
    }

    fn answer(&mut self) {
        self.turn += 1;
        let k = self.turn;
        // Acquire/Release: pair with the asking side's store and load.
        spin_until(|| (self.word.load(Acquire) == 2 * k - 1).then_some(()));
        self.word.store(2 * k, Release);
    }
}

/// A `u64` over our ring: busy-polling `try_send`/`try_recv`, or the
/// blocking `push`/`pop` (spin, then sleep).
#[derive(Debug)]
pub struct Ring {
    tx: Option<Producer<u64>>,
    rx: Option<Consumer<u64>>,
    blocking: bool,
}

impl Word for Ring {
    fn put(&mut self, v: u64) {
        let tx = self.tx.as_mut().expect("a sending end");
        if self.blocking {
            tx.send(v).unwrap_or_else(|e| panic!("send: {e}"));
        } else {
            push_ours(tx, v);
        }
    }

    fn take(&mut self) -> u64 {
        let rx = self.rx.as_mut().expect("a receiving end");
        if self.blocking {
            rx.recv().unwrap_or_else(|e| panic!("recv: {e}"))
        } else {
            pop_ours(rx)
        }
    }
}

/// Both sides of a round trip over two of our rings of `slots` (asker
/// first).
///
/// # Errors
///
/// If a ring cannot be created.
pub fn ring_echo(slots: usize, blocking: bool) -> Result<(EchoEnd, EchoEnd), shmproc::SegmentError> {
    let (a_tx, a_rx) = spsc::channel::<u64>(slots)?;
    let (b_tx, b_rx) = spsc::channel::<u64>(slots)?;
    let side = |tx, rx| Ring {
        tx: Some(tx),
        rx: Some(rx),
        blocking,
    };
    Ok((echo(side(a_tx, b_rx)), echo(side(b_tx, a_rx))))
}

/// A `u64` over our duplex channel: busy-polling `try_send`/`try_recv`, or
/// the blocking `send`/`recv` (spin, then sleep).
#[derive(Debug)]
pub struct DuplexEcho {
    end: Duplex<u64, u64>,
    blocking: bool,
}

impl Word for DuplexEcho {
    fn put(&mut self, v: u64) {
        if self.blocking {
            self.end.send(v).unwrap_or_else(|e| panic!("send: {e}"));
        } else {
            send_duplex(&mut self.end, v);
        }
    }

    fn take(&mut self) -> u64 {
        if self.blocking {
            self.end.recv().unwrap_or_else(|e| panic!("recv: {e}"))
        } else {
            recv_duplex(&mut self.end)
        }
    }
}

/// Both sides of a round trip over our duplex channel with rings of
/// `slots` (asker first).
///
/// # Errors
///
/// If the channel cannot be created.
pub fn duplex_echo(slots: usize, blocking: bool) -> Result<(EchoEnd, EchoEnd), shmproc::SegmentError> {
    let (a, b) = duplex::channel::<u64, u64>(slots)?;
    let side = |end| DuplexEcho { end, blocking };
    Ok((echo(side(a)), echo(side(b))))
}

/// A one-way `u64` stream over our ring of `slots` (sender first).
///
/// # Errors
///
/// If the ring cannot be created.
pub fn ring_flow(slots: usize, blocking: bool) -> Result<(FeedEnd, DrainEnd), shmproc::SegmentError> {
    let (tx, rx) = spsc::channel::<u64>(slots)?;
    let side = |tx, rx| OneWay(Ring { tx, rx, blocking });
    Ok((feed(side(Some(tx), None)), drain(side(None, Some(rx)))))
}

/// Messages of `K` words over our ring by loan: the sender writes every
/// word of a reserved slot, the receiver checks every word of a peeked one.
#[derive(Debug)]
pub struct Loans<const K: usize> {
    tx: Option<Producer<[u64; K]>>,
    rx: Option<Consumer<[u64; K]>>,
}

/// A one-way stream of `K`-word messages over our ring of `slots` (sender
/// first).
///
/// # Errors
///
/// If the ring cannot be created.
pub fn loan_flow<const K: usize>(slots: usize) -> Result<(FeedEnd, DrainEnd), shmproc::SegmentError>
where
    [u64; K]: ShmSafe,
{
    let (tx, rx) = spsc::channel::<[u64; K]>(slots)?;
    let tx = Loans { tx: Some(tx), rx: None };
    Ok((feed(tx), drain(Loans { tx: None, rx: Some(rx) })))
}

impl<const K: usize> Feed for Loans<K>
where
    [u64; K]: ShmSafe,
{
    fn send(&mut self, from: u64, count: u64) {
        let tx = self.tx.as_mut().expect("a sending end");
        for s in from..from + count {
            spin_until(|| {
                tx.try_reserve().ok().map(|mut slot| {
                    slot.fill(s);
                    slot.commit();
                })
            });
        }
    }
}

impl<const K: usize> Drain for Loans<K>
where
    [u64; K]: ShmSafe,
{
    fn receive(&mut self, from: u64, count: u64) -> u64 {
        let rx = self.rx.as_mut().expect("a receiving end");
        let mut ok = |s| spin_until(|| rx.try_peek().ok().map(|slot| intact(slot.iter().copied(), s)));
        (from..from + count).map(|s| u64::from(!ok(s))).sum()
    }
}

/// Messages of `words` words over a byte stream (a pipe or a socket): one
/// `write_all` and one `read_exact` per message, blocking.
#[derive(Debug)]
pub struct Stream<R, W> {
    r: R,
    w: W,
    buf: Vec<u8>,
}

impl<R: Read, W: Write> Word for Stream<R, W> {
    /// Writes a message whose words all hold `s`.
    fn put(&mut self, s: u64) {
        for word in self.buf.chunks_exact_mut(8) {
            word.copy_from_slice(&s.to_le_bytes());
        }
        self.w.write_all(&self.buf).expect("write a message");
    }

    /// Reads one message; returns its first word.
    fn take(&mut self) -> u64 {
        self.r.read_exact(&mut self.buf).expect("read a message");
        u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"))
    }
}

impl<R: Read, W: Write> Stream<R, W> {
    fn new(r: R, w: W, words: usize) -> Self {
        Self {
            r,
            w,
            buf: vec![0; 8 * words],
        }
    }

    /// Whether every word of the message last read holds `s`.
    fn holds(&self, s: u64) -> bool {
        let words = self.buf.chunks_exact(8);
        intact(words.map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))), s)
    }
}

impl<R: Read, W: Write> Feed for Stream<R, W> {
    fn send(&mut self, from: u64, count: u64) {
        (from..from + count).for_each(|s| self.put(s));
    }
}

impl<R: Read, W: Write> Drain for Stream<R, W> {
    fn receive(&mut self, from: u64, count: u64) -> u64 {
        (from..from + count)
            .map(|s| {
                self.take();
                u64::from(!self.holds(s))
            })
            .sum()
    }
}

/// A byte stream's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// Two pipes (one per direction for round trips).
    Pipe,
    /// A `socketpair(AF_UNIX, SOCK_STREAM)`.
    Socket,
}

/// An echo or stream end over a pipe or a socket.
type StreamEnd = Stream<Box<dyn Read + Send>, Box<dyn Write + Send>>;

/// Two connected ends: what one writes the other reads, and back.
fn stream_pair(kind: Bytes, words: usize) -> io::Result<(StreamEnd, StreamEnd)> {
    let boxed = |r: Box<dyn Read + Send>, w: Box<dyn Write + Send>| Stream::new(r, w, words);
    Ok(match kind {
        Bytes::Pipe => {
            let (a_r, a_w) = io::pipe()?;
            let (b_r, b_w) = io::pipe()?;
            (boxed(Box::new(b_r), Box::new(a_w)), boxed(Box::new(a_r), Box::new(b_w)))
        }
        Bytes::Socket => {
            let (a, b) = UnixStream::pair()?;
            let (a2, b2) = (a.try_clone()?, b.try_clone()?);
            (boxed(Box::new(a), Box::new(a2)), boxed(Box::new(b), Box::new(b2)))
        }
    })
}

/// Both sides of an 8-byte round trip over a pipe or socket (asker first).
///
/// # Errors
///
/// If the pipes or sockets cannot be made.
pub fn stream_echo(kind: Bytes) -> io::Result<(EchoEnd, EchoEnd)> {
    let (a, b) = stream_pair(kind, 1)?;
    Ok((echo(a), echo(b)))
}

/// A one-way stream of `words`-word messages over a pipe or socket
/// (sender first).
///
/// # Errors
///
/// If the pipes or sockets cannot be made.
pub fn stream_flow(kind: Bytes, words: usize) -> io::Result<(FeedEnd, DrainEnd)> {
    let (a, b) = stream_pair(kind, words)?;
    Ok((feed(a), drain(b)))
}

/// A `u64` round trip over two ipc-channel channels (blocking `recv`).
#[derive(Debug)]
pub struct IpcEcho {
    tx: ipc_channel::ipc::IpcSender<u64>,
    rx: ipc_channel::ipc::IpcReceiver<u64>,
}

/// Both sides of an ipc-channel round trip (asker first).
///
/// # Errors
///
/// If a channel cannot be made.
pub fn ipc_echo() -> io::Result<(EchoEnd, EchoEnd)> {
    let (a_tx, a_rx) = ipc_channel::ipc::channel::<u64>()?;
    let (b_tx, b_rx) = ipc_channel::ipc::channel::<u64>()?;
    let a = IpcEcho { tx: a_tx, rx: b_rx };
    Ok((echo(a), echo(IpcEcho { tx: b_tx, rx: a_rx })))
}

impl Word for IpcEcho {
    fn put(&mut self, v: u64) {
        self.tx.send(v).expect("ipc-channel send");
    }

    fn take(&mut self) -> u64 {
        self.rx.recv().expect("ipc-channel recv")
    }
}

/// A `u64` over bounded crossbeam channels: blocking `send`/`recv`, or
/// busy-polling `try_send`/`try_recv`.
#[derive(Debug)]
pub struct Crossbeam {
    tx: Option<crossbeam_channel::Sender<u64>>,
    rx: Option<crossbeam_channel::Receiver<u64>>,
    blocking: bool,
}

impl Word for Crossbeam {
    fn put(&mut self, v: u64) {
        let tx = self.tx.as_ref().expect("a sending end");
        if self.blocking {
            tx.send(v).expect("crossbeam send");
        } else {
            spin_until(|| match tx.try_send(v) {
                Ok(()) => Some(()),
                Err(crossbeam_channel::TrySendError::Full(_)) => None,
                Err(e) => panic!("crossbeam try_send: {e}"),
            });
        }
    }

    fn take(&mut self) -> u64 {
        let rx = self.rx.as_ref().expect("a receiving end");
        if self.blocking {
            rx.recv().expect("crossbeam recv")
        } else {
            spin_until(|| match rx.try_recv() {
                Ok(v) => Some(v),
                Err(crossbeam_channel::TryRecvError::Empty) => None,
                Err(e) => panic!("crossbeam try_recv: {e}"),
            })
        }
    }
}

/// Both sides of a round trip over two bounded crossbeam channels of
/// `cap` (asker first).
pub fn crossbeam_echo(cap: usize, blocking: bool) -> (EchoEnd, EchoEnd) {
    let (a_tx, a_rx) = crossbeam_channel::bounded(cap);
    let (b_tx, b_rx) = crossbeam_channel::bounded(cap);
    let side = |tx, rx| Crossbeam {
        tx: Some(tx),
        rx: Some(rx),
        blocking,
    };
    (echo(side(a_tx, b_rx)), echo(side(b_tx, a_rx)))
}

/// A one-way stream over a bounded crossbeam channel of `cap` (sender
/// first).
pub fn crossbeam_flow(cap: usize, blocking: bool) -> (FeedEnd, DrainEnd) {
    let (tx, rx) = crossbeam_channel::bounded(cap);
    let side = |tx, rx| OneWay(Crossbeam { tx, rx, blocking });
    (feed(side(Some(tx), None)), drain(side(None, Some(rx))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips(a: EchoEnd, b: EchoEnd) {
        let (mut a, b) = (a(), b);
        let t = std::thread::spawn(move || {
            let mut b = b();
            (0..3).for_each(|_| b.answer());
        });
        for i in 1..=3 {
            assert_eq!(a.ask(i * 7), i * 7);
        }
        t.join().expect("the answering thread");
    }

    fn streams(f: FeedEnd, d: DrainEnd) {
        let t = std::thread::spawn(move || f().send(5, 40));
        assert_eq!(d().receive(5, 40), 0);
        t.join().expect("the sending thread");
    }

    #[test]
    fn every_end_echoes_and_streams_in_order() {
        let (a, b) = floor().expect("map");
        round_trips(a, b);
        for blocking in [false, true] {
            let (a, b) = ring_echo(4, blocking).expect("rings");
            round_trips(a, b);
            let (a, b) = crossbeam_echo(4, blocking);
            round_trips(a, b);
            let (f, d) = ring_flow(4, blocking).expect("ring");
            streams(f, d);
            let (f, d) = crossbeam_flow(4, blocking);
            streams(f, d);
        }
        for kind in [Bytes::Pipe, Bytes::Socket] {
            let (a, b) = stream_echo(kind).expect("fds");
            round_trips(a, b);
            let (f, d) = stream_flow(kind, 3).expect("fds");
            streams(f, d);
        }
        let (a, b) = ipc_echo().expect("channels");
        round_trips(a, b);
        let (f, d) = loan_flow::<4>(2).expect("ring");
        streams(f, d);
    }

    #[test]
    fn damaged_messages_are_counted() {
        let (f, d) = stream_flow(Bytes::Pipe, 2).expect("pipe");
        let (mut f, mut d) = (f(), d());
        f.send(1, 2);
        assert_eq!(d.receive(0, 2), 2, "every message is one off");
    }
}
