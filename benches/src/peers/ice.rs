//! The iceoryx2 peer (the crate from crates.io, `ipc::Service`: shared
//! memory between processes, no daemon): publish-subscribe ends for the
//! drivers of [`crate::peers::drive`].
//!
//! - Round trip ([`echo_ends`]): a `u64` out on one service and back on a
//!   second, busy-polling `receive()`; the services are set up as
//!   iceoryx2's own publish-subscribe benchmark sets up its ping-pong (no
//!   history, a subscriber buffer of 1, safe overflow).
//! - One way ([`flow_ends`]): `u64` by `send_copy`, or `K`-word slices by
//!   `loan_slice_uninit` + `write_from_fn`; no safe overflow, and the
//!   publisher retries until delivered, so nothing is lost and a full
//!   buffer holds the sender back as a full ring does.
//!
//! Each end is built in the process that uses it (a port is tied to its
//! node and process). The drivers build every end on both sides, meet,
//! then call `connect` (each port's `update_connections`) on both sides
//! and meet again before the first message: a subscriber attaches to a
//! publisher's connection only in `update_connections` (or its first
//! `receive`), and until it has, a publisher that finds the buffer full
//! drops the sample rather than retrying. Service names carry the
//! parent's pid, so concurrent runs never meet.

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use iceoryx2::service::builder::publish_subscribe::Builder;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

use crate::peers::ends::{Drain, DrainEnd, EchoEnd, Feed, FeedEnd, OneWay, Word, intact};
use crate::peers::hand_ring::spin_until;

/// The peer's name in the report (the version Cargo.toml asks for).
pub const ICEORYX2: &str = "iceoryx2 0.10";

/// Quiets iceoryx2's console logger (it warns, for instance, that it found
/// no config file and uses its defaults). Call before forking, so that the
/// children inherit the level.
pub fn quiet() {
    set_log_level(LogLevel::Error);
}

/// How a service is set up.
#[derive(Clone, Copy, Debug)]
enum Qos {
    /// Round trips: no history, a buffer of 1 that overflows safely.
    Echo,
    /// One way: a buffer of `n`, no overflow, the sender retries.
    Flow(usize),
}

/// A unique service name for `tag`.
fn name(tag: &str) -> ServiceName {
    let pid = std::process::id();
    ServiceName::new(&format!("shmproc-benches/{pid}/{tag}")).expect("a valid service name")
}

fn node() -> Node<ipc::Service> {
    NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("create an iceoryx2 node")
}

/// Sets a service up for `qos`.
fn configure<P: core::fmt::Debug + IceoryxSend + ?Sized>(
    b: Builder<P, (), ipc::Service>,
    qos: Qos,
) -> Builder<P, (), ipc::Service> {
    let b = b.max_publishers(1).max_subscribers(1).history_size(0);
    match qos {
        Qos::Echo => b.subscriber_max_buffer_size(1).enable_safe_overflow(true),
        Qos::Flow(n) => b.subscriber_max_buffer_size(n).enable_safe_overflow(false),
    }
}

const OPEN: &str = "open or create an iceoryx2 service";
const CONNECT: &str = "connect iceoryx2 ports";
/// A full subscriber buffer holds the publisher back (ignored where the
/// service overflows safely).
const RETRY: BackpressureStrategy = BackpressureStrategy::RetryUntilDelivered;
const PUBLISHER: &str = "create an iceoryx2 publisher";
const SUBSCRIBER: &str = "create an iceoryx2 subscriber";

/// Opens (or creates) the `u64` service `name`.
fn service(node: &Node<ipc::Service>, name: &ServiceName, qos: Qos) -> PortFactory<ipc::Service, u64, ()> {
    let b = node.service_builder(name).publish_subscribe::<u64>();
    configure(b, qos).open_or_create().expect(OPEN)
}

/// Opens (or creates) the `[u64]` service `name`.
fn slice_service(node: &Node<ipc::Service>, name: &ServiceName, qos: Qos) -> PortFactory<ipc::Service, [u64], ()> {
    let b = node.service_builder(name).publish_subscribe::<[u64]>();
    configure(b, qos).open_or_create().expect(OPEN)
}

/// `u64` ports: a publisher on one service, a subscriber on another, or
/// both (a round trip). Fields drop in order: ports, services, node.
struct IceWord {
    publisher: Option<Publisher<ipc::Service, u64, ()>>,
    subscriber: Option<Subscriber<ipc::Service, u64, ()>>,
    _services: Vec<PortFactory<ipc::Service, u64, ()>>,
    _node: Node<ipc::Service>,
}

impl IceWord {
    /// Publishes on `out`, subscribes to `back` (either may be absent).
    fn build(out: Option<&ServiceName>, back: Option<&ServiceName>, qos: Qos) -> Self {
        let node = node();
        let (out, back) = (
            out.map(|n| service(&node, n, qos)),
            back.map(|n| service(&node, n, qos)),
        );
        Self {
            publisher: out.as_ref().map(|s| {
                s.publisher_builder()
                    .backpressure_strategy(RETRY)
                    .create()
                    .expect(PUBLISHER)
            }),
            subscriber: back
                .as_ref()
                .map(|s| s.subscriber_builder().create().expect(SUBSCRIBER)),
            _services: out.into_iter().chain(back).collect(),
            _node: node,
        }
    }
}

impl Word for IceWord {
    fn connect(&mut self) {
        if let Some(p) = &self.publisher {
            p.update_connections().expect(CONNECT);
        }
        if let Some(s) = &self.subscriber {
            s.update_connections().expect(CONNECT);
        }
    }

    #[inline]
    fn put(&mut self, v: u64) {
        let p = self.publisher.as_ref().expect("a publisher");
        p.send_copy(v).expect("iceoryx2 send");
    }

    #[inline]
    fn take(&mut self) -> u64 {
        let sub = self.subscriber.as_ref().expect("a subscriber");
        spin_until(|| sub.receive().expect("iceoryx2 receive").map(|s| *s))
    }
}

/// Both sides of a `u64` round trip over two services (asker first).
pub fn echo_ends(tag: &str) -> (EchoEnd, EchoEnd) {
    let (out, back) = (name(&format!("{tag}/ping")), name(&format!("{tag}/pong")));
    // `ServiceName` is `Copy`: each recipe takes its own copy of both.
    let asker: EchoEnd = Box::new(move || Box::new(IceWord::build(Some(&out), Some(&back), Qos::Echo)));
    let answerer: EchoEnd = Box::new(move || Box::new(IceWord::build(Some(&back), Some(&out), Qos::Echo)));
    (asker, answerer)
}

/// One side of a one-way stream of `[u64]` slices of `words` words, by
/// loan: a publisher or a subscriber.
struct IceSlices {
    words: usize,
    publisher: Option<Publisher<ipc::Service, [u64], ()>>,
    subscriber: Option<Subscriber<ipc::Service, [u64], ()>>,
    _service: PortFactory<ipc::Service, [u64], ()>,
    _node: Node<ipc::Service>,
}

impl IceSlices {
    fn build(name: &ServiceName, words: usize, buffer: usize, sending: bool) -> Self {
        let node = node();
        let s = slice_service(&node, name, Qos::Flow(buffer));
        let publisher = sending.then(|| {
            let b = s.publisher_builder().initial_max_slice_len(words);
            b.backpressure_strategy(RETRY).create().expect(PUBLISHER)
        });
        Self {
            words,
            publisher,
            subscriber: (!sending).then(|| s.subscriber_builder().create().expect(SUBSCRIBER)),
            _service: s,
            _node: node,
        }
    }

    fn connect_ports(&self) {
        if let Some(p) = &self.publisher {
            p.update_connections().expect(CONNECT);
        }
        if let Some(s) = &self.subscriber {
            s.update_connections().expect(CONNECT);
        }
    }
}

impl Feed for IceSlices {
    fn connect(&mut self) {
        self.connect_ports();
    }

    fn send(&mut self, from: u64, count: u64) {
        let p = self.publisher.as_ref().expect("a publisher");
        for s in from..from + count {
            let sample = spin_until(|| p.loan_slice_uninit(self.words).ok());
            sample.write_from_fn(|_| s).send().expect("iceoryx2 send");
        }
    }
}

impl Drain for IceSlices {
    fn connect(&mut self) {
        self.connect_ports();
    }

    fn receive(&mut self, from: u64, count: u64) -> u64 {
        let sub = self.subscriber.as_ref().expect("a subscriber");
        let mut wrong = 0;
        for s in from..from + count {
            let ok = spin_until(|| {
                let sample = sub.receive().expect("iceoryx2 receive")?;
                Some(intact(sample.payload().iter().copied(), s))
            });
            wrong += u64::from(!ok);
        }
        wrong
    }
}

/// Both sides of a one-way stream (sender first): plain `u64` by
/// `send_copy` when `words` is 0, else `[u64]` slices of `words` by loan;
/// the subscriber buffers up to `buffer` samples.
pub fn flow_ends(tag: &str, words: usize, buffer: usize) -> (FeedEnd, DrainEnd) {
    let name = name(tag);
    if words == 0 {
        let qos = Qos::Flow(buffer);
        let tx: FeedEnd = Box::new(move || Box::new(OneWay(IceWord::build(Some(&name), None, qos))));
        let rx: DrainEnd = Box::new(move || Box::new(OneWay(IceWord::build(None, Some(&name), qos))));
        return (tx, rx);
    }
    let tx: FeedEnd = Box::new(move || Box::new(IceSlices::build(&name, words, buffer, true)));
    let rx: DrainEnd = Box::new(move || Box::new(IceSlices::build(&name, words, buffer, false)));
    (tx, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iceoryx2_echoes_and_streams_between_threads() {
        quiet();
        let (asker, answerer) = echo_ends("test-echo");
        let (plain_tx, plain_rx) = flow_ends("test-flow", 0, 4);
        let (slice_tx, slice_rx) = flow_ends("test-slices", 3, 2);
        // Both ends exist before the first message, as in the drivers.
        let line = std::sync::Arc::new(std::sync::Barrier::new(2));
        let theirs = std::sync::Arc::clone(&line);
        let other = std::thread::spawn(move || {
            let (mut b, mut f, mut fs) = (answerer(), plain_tx(), slice_tx());
            theirs.wait();
            b.connect();
            f.connect();
            fs.connect();
            theirs.wait();
            b.answer();
            f.send(0, 10);
            fs.send(7, 5);
        });
        let (mut a, mut d, mut ds) = (asker(), plain_rx(), slice_rx());
        line.wait();
        a.connect();
        d.connect();
        ds.connect();
        line.wait();
        assert_eq!(a.ask(42), 42);
        assert_eq!(d.receive(0, 10), 0);
        assert_eq!(ds.receive(7, 5), 0);
        other.join().expect("the other thread");
    }
}
