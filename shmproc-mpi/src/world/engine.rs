//! The rank's MPI engine: every MPI call after start-up goes through it,
//! under one lock (so `MPI_THREAD_SERIALIZED` is enough).
//!
//! # Who drives it
//!
//! The communication thread steps the engine while nobody else does:
//! it sends what the other threads hand it, tests the receive it keeps
//! posted for what arrives (without blocking: a blocking wait busy-polls a
//! core), and routes it.
//! A thread that waits for something MPI brings (a reply, an item a
//! remote rank puts into this rank's queue) drives the engine itself for
//! a while instead of sleeping: the message is then received, routed and
//! answered by the thread that wants it, with no hand-off. A sleeping
//! thread costs a wake-up (60-70 us on a virtual machine's idle core,
//! three times a TCP round trip between hosts), which is what this
//! avoids. One thread drives at a time; the communication thread pauses
//! meanwhile, so a rank spins on one core at most.

use std::collections::HashMap;
use std::sync::{PoisonError, mpsc};
use std::time::{Duration, Instant};

use mpi::datatype::Equivalence;
use mpi::point_to_point::{Destination, Source};
use mpi::request::{Request as MpiRequest, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::{Request, Shared, rank_i32, tag};
use crate::sync::atomic::Ordering;

/// What the other threads ask of the engine.
pub(super) enum Cmd {
    /// Send `bytes` to `to` with `tag`.
    Send {
        to: usize,
        tag: i32,
        bytes: Vec<u8>,
    },
    /// Send a request and hand its reply (on `reply_tag`) to `reply`.
    Ask {
        to: usize,
        tag: i32,
        reply_tag: i32,
        bytes: Vec<u8>,
        reply: mpsc::Sender<Vec<u8>>,
    },
    /// Run a closure on `MPI_COMM_WORLD`, under the engine's lock.
    Run(Box<dyn FnOnce(&SimpleCommunicator) + Send>),
    Stop,
}

/// The communicator.
pub(super) struct Comm(pub(super) SimpleCommunicator);

// SAFETY: the handle is an identifier; after `World::init` hands it to the
// engine, MPI is called only under the engine's lock (one thread at a
// time: MPI_THREAD_SERIALIZED, checked at init), and `World::drop` joins
// the communication thread before MPI is finalised.
unsafe impl Send for Comm {}

/// Where the engine puts the messages of collective steps.
pub(super) struct Routes {
    pub(super) arrive: mpsc::Sender<(usize, Vec<u8>)>,
    pub(super) release: mpsc::Sender<(usize, Vec<u8>)>,
    pub(super) name: mpsc::Sender<(usize, Vec<u8>)>,
}

/// The MPI state of the rank, under `Shared::engine`.
pub(super) struct Engine {
    /// Freed when the engine stops, before MPI is finalised (a
    /// communicator freed after that would crash the process). The first
    /// carries every message of at most [`SMALL`] bytes and the headers of
    /// the larger ones, whose bodies go on the second.
    comm: Option<(Comm, Comm)>,
    /// The receive kept posted on the first communicator (any source, any
    /// tag, [`SMALL`] bytes): a message lands in it as it arrives, which
    /// costs less than a probe for it and a receive.
    posted: Option<Posted>,
    /// The tag of the next large body (cycling: bodies from one rank on one
    /// tag arrive in order, as their headers do).
    large_tag: i32,
    commands: mpsc::Receiver<Cmd>,
    routes: Routes,
    /// Reply channels by reply tag.
    waiting: HashMap<i32, mpsc::Sender<Vec<u8>>>,
    sends: Sends,
    steps: u32,
    stopped: bool,
}

impl Engine {
    pub(super) fn new(comm: Comm, commands: mpsc::Receiver<Cmd>, routes: Routes) -> Self {
        let large = Comm(comm.0.duplicate());
        let mut e = Self {
            comm: Some((comm, large)),
            posted: None,
            large_tag: 0,
            commands,
            routes,
            waiting: HashMap::new(),
            sends: Sends::default(),
            steps: 0,
            stopped: false,
        };
        let buf: *mut [u8] = Box::leak(vec![0u8; SMALL].into_boxed_slice());
        e.post(buf);
        e
    }

    /// Posts the receive into `buf` (a leaked box of [`SMALL`] bytes).
    fn post(&mut self, buf: *mut [u8]) {
        let Some((c, _)) = &self.comm else { return };
        // SAFETY: `buf` is a leaked box that only this posted receive uses
        // until it completes (`step` reads it after that, then posts it
        // again) or is cancelled and waited for (`finish`), which frees it.
        let view: &'static mut [u8] = unsafe { &mut *buf };
        let request = c.0.any_process().immediate_receive_into(StaticScope, view);
        self.posted = Some(Posted { request, buf });
    }

    /// Sends `bytes` to `to` with `tag`: as it is when it fits in
    /// [`SMALL`] bytes, else its body on the second communicator and a
    /// header `[tag][body's tag]` on the first.
    fn send(&mut self, to: usize, tag: i32, bytes: Vec<u8>) {
        let Some((c, large)) = &self.comm else { return };
        if bytes.len() <= SMALL {
            self.sends.start(&c.0, to, tag, bytes);
            return;
        }
        self.large_tag = (self.large_tag + 1) % LARGE_TAGS;
        let body_tag = self.large_tag;
        self.sends.start(&large.0, to, body_tag, bytes);
        let mut header = tag.to_le_bytes().to_vec();
        header.extend_from_slice(&body_tag.to_le_bytes());
        self.sends.start(&c.0, to, tag::LARGE, header);
    }

    /// Carries out every command handed in so far.
    fn commands(&mut self) -> bool {
        let mut any = false;
        while !self.stopped
            && let Ok(cmd) = self.commands.try_recv()
        {
            any = true;
            self.command(cmd);
        }
        any
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Send { to, tag, bytes } => self.send(to, tag, bytes),
            Cmd::Ask {
                to,
                tag,
                reply_tag,
                bytes,
                reply,
            } => {
                if self.comm.is_some() {
                    self.waiting.insert(reply_tag, reply);
                    self.send(to, tag, bytes);
                }
            }
            Cmd::Run(f) => f(&SimpleCommunicator::world()),
            Cmd::Stop => self.stopped = true,
        }
    }

    /// One step: the commands, the sends under way, one test of the posted
    /// receive (and, when a message came, what it made the handlers send).
    /// Whether it did anything.
    fn step(&mut self, s: &Shared) -> bool {
        // The test of the posted receive makes MPI progress too: sends
        // under way are tested (and their buffers freed) every few steps.
        self.steps = self.steps.wrapping_add(1);
        if self.steps.is_multiple_of(TEST_SENDS_EVERY) || self.sends.pending.len() > 16 {
            self.sends.progress();
        }
        let busy = self.commands();
        if self.stopped {
            return true;
        }
        let Some(Posted { request, buf }) = self.posted.take() else {
            return busy;
        };
        let status = match request.test() {
            Ok(status) => status,
            Err(request) => {
                self.posted = Some(Posted { request, buf });
                return busy;
            }
        };
        let n = usize::try_from(status.count(u8::equivalent_datatype())).unwrap_or(0);
        // SAFETY: the receive into `buf` completed, so MPI no longer
        // writes it; `n` is what it received, at most its length.
        let body = unsafe { &(&*buf)[..n.min(SMALL)] }.to_vec();
        self.post(buf);
        let from = usize::try_from(status.source_rank()).unwrap_or(usize::MAX);
        let (kind, body) = if status.tag() == tag::LARGE {
            let Some(large) = self.large_body(from, &body) else {
                tracing::warn!(from, "a malformed large message's header; dropped");
                return true;
            };
            large
        } else {
            (status.tag(), body)
        };
        route(s, &mut self.waiting, &self.routes, from, kind, body);
        // Replies the handlers made go out now, not a step later.
        self.commands();
        true
    }

    /// The body a large message's header announces, received now (its
    /// sender sent it before the header): its own tag and its bytes.
    fn large_body(&self, from: usize, header: &[u8]) -> Option<(i32, Vec<u8>)> {
        let kind = i32::from_le_bytes(header.get(..4)?.try_into().ok()?);
        let body_tag = i32::from_le_bytes(header.get(4..8)?.try_into().ok()?);
        let (_, large) = self.comm.as_ref()?;
        let (body, _) = large
            .0
            .process_at_rank(rank_i32(from))
            .receive_vec_with_tag::<u8>(body_tag);
        Some((kind, body))
    }
}

/// The largest message sent as it is (larger ones: a header, then the
/// body on a communicator of their own).
const SMALL: usize = 4096;

/// Tags the bodies of large messages cycle through.
const LARGE_TAGS: i32 = 30_000;

/// The receive kept posted, and its buffer (a leaked box).
struct Posted {
    request: MpiRequest<'static, [u8]>,
    buf: *mut [u8],
}

impl Engine {
    /// Stops: waits for the sends under way, cancels the posted receive,
    /// frees the communicators (before MPI is finalised).
    fn finish(&mut self, s: &Shared) {
        // No command is taken from now on, and none is left waiting: their
        // reply channels close, so whoever waits gets an error.
        *s.cmds.lock().unwrap_or_else(PoisonError::into_inner) = None;
        while self.commands.try_recv().is_ok() {}
        self.waiting.clear();
        self.sends.finish();
        if let Some(Posted { request, buf }) = self.posted.take() {
            request.cancel();
            request.wait();
            // SAFETY: the receive was cancelled and waited for, so MPI no
            // longer writes the buffer; it is the box leaked by `new`.
            drop(unsafe { Box::from_raw(buf) });
        }
        self.comm = None;
    }
}

/// Steps between two tests of the sends under way.
const TEST_SENDS_EVERY: u32 = 8;

/// Idle steps before the communication thread sleeps between them.
const SPIN_STEPS: u32 = 20_000;

/// How long the communication thread sleeps between steps once idle.
const IDLE_SLEEP: Duration = Duration::from_micros(50);

/// How long the communication thread sleeps while another thread drives.
const DRIVEN_SLEEP: Duration = Duration::from_millis(2);

/// A driving thread yields (a system call: see `drive_until`) every this
/// many idle steps.
const YIELD_EVERY: u32 = 16;

/// How long a waiting thread drives the engine before it sleeps instead.
const DRIVE_FOR: Duration = Duration::from_millis(2);

/// The communication thread: steps the engine while no other thread
/// drives it; spins a while after the last message (a reply usually comes
/// within it), then sleeps in short slices (woken by a command).
pub(super) fn communicate(s: &Shared) {
    let mut idle = 0u32;
    loop {
        // Acquire: pairs with the Release of a driver that stopped, whose
        // steps happened before.
        if s.drivers.load(Ordering::Acquire) > 0 {
            std::thread::park_timeout(DRIVEN_SLEEP);
            continue;
        }
        let (busy, sending) = {
            let mut e = s.engine.lock().unwrap_or_else(PoisonError::into_inner);
            let busy = e.step(s);
            if e.stopped {
                e.finish(s);
                return;
            }
            (busy, !e.sends.is_empty())
        };
        if busy {
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
        }
        if idle < SPIN_STEPS || sending {
            std::hint::spin_loop();
        } else {
            // Relaxed both: a missed flag costs one slice, never a message
            // (the next step takes every command).
            s.comm_sleeping.store(true, Ordering::Relaxed);
            std::thread::park_timeout(IDLE_SLEEP);
            s.comm_sleeping.store(false, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// Hands `c` to the engine (wakes the communication thread if it
    /// sleeps).
    pub(super) fn cmd(&self, c: Cmd) -> bool {
        // Once the engine has stopped (the World was dropped) the command
        // is dropped here: a thread waiting for its reply then gets an
        // error instead of waiting for ever.
        let taken = match &*self.cmds.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(to) => to.send(c).is_ok(),
            None => false,
        };
        // Relaxed: see `communicate`.
        if self.comm_sleeping.load(Ordering::Relaxed)
            && let Some(t) = self.comm_thread.get()
        {
            t.unpark();
        }
        taken
    }

    /// Carries `c` out now, on this thread, if the engine is free (after
    /// what was handed in before it, so this thread's messages keep their
    /// order); else hands it in for the engine's holder's next step.
    pub(super) fn cmd_now(&self, c: Cmd) -> bool {
        match self.engine.try_lock() {
            Ok(mut e) if !e.stopped => {
                e.commands();
                e.command(c);
                true
            }
            _ => self.cmd(c),
        }
    }

    /// Waits for `done` to give a value by driving the engine, for at most
    /// [`DRIVE_FOR`]; `None` if another thread drives already or the time
    /// ran out (the caller then sleeps on what it waits for, and the
    /// communication thread drives).
    pub(crate) fn drive_until<T>(&self, mut done: impl FnMut() -> Option<T>) -> Option<T> {
        // On one node nothing this rank waits for comes through MPI.
        if !self.node_of.iter().any(|&n| n != 0) || std::env::var_os("SHM_MPI_NO_DRIVE").is_some() {
            return None;
        }
        // Acquire/Release: the engine's lock orders the steps; this count
        // only says who may take them.
        if self
            .drivers
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let start = Instant::now();
        let mut n = 0u32;
        let out = loop {
            if let Some(t) = done() {
                break Some(t);
            }
            let engine = match self.engine.try_lock() {
                Ok(e) => Some(e),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            let busy = match engine {
                Some(e) if e.stopped => break None,
                Some(mut e) => e.step(self),
                None => false,
            };
            n = n.wrapping_add(1);
            if n.is_multiple_of(64) && start.elapsed() > DRIVE_FOR {
                break None;
            }
            if !busy && n.is_multiple_of(YIELD_EVERY) {
                // A system call now and then: a message between hosts is
                // delivered by the kernel's soft interrupts, which a thread
                // that only spins in user space would hold off until the
                // next scheduler tick (milliseconds) on a busy machine.
                std::thread::yield_now();
            }
        };
        // With its value, this thread goes on (and likely drives again
        // soon): the communication thread takes over within
        // `DRIVEN_SLEEP` by itself, since waking it here would preempt, on
        // a small machine, this thread or the other rank's. Without, this
        // thread is about to sleep: the communication thread must drive
        // now.
        self.drivers.store(0, Ordering::Release);
        if out.is_none()
            && let Some(t) = self.comm_thread.get()
        {
            t.unpark();
        }
        out
    }
}

/// Sends under way. A blocking send of a large message waits until the
/// receiver takes it (rendezvous), and two ranks each sending one to the
/// other would wait for ever: every send is immediate, and its buffer lives
/// until MPI says the send completed.
#[derive(Default)]
struct Sends {
    pending: Vec<(MpiRequest<'static, [u8]>, *mut [u8])>,
    /// `pending`'s other buffer (`progress` swaps them: no allocation).
    spare: Vec<(MpiRequest<'static, [u8]>, *mut [u8])>,
}

// SAFETY: the buffers are owned by this list (leaked boxes freed once
// their send completed), and the requests are MPI handles used only under
// the engine's lock.
unsafe impl Send for Sends {}

// SAFETY: as for `Sends`: the buffer is owned by the posted receive, the
// request used only under the engine's lock.
unsafe impl Send for Posted {}

impl Sends {
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn start(&mut self, comm: &SimpleCommunicator, to: usize, tag: i32, bytes: Vec<u8>) {
        let buf: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
        let ptr: *mut [u8] = buf;
        // SAFETY: `ptr` comes from the leaked box just above; the shared
        // view handed to MPI is the only use of it until `progress` or
        // `finish` frees it once the send has completed.
        let view: &'static [u8] = unsafe { &*ptr };
        let request = comm
            .process_at_rank(rank_i32(to))
            .immediate_send_with_tag(StaticScope, view, tag);
        self.pending.push((request, ptr));
    }

    /// Frees the buffers of the sends that completed.
    fn progress(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut still = std::mem::take(&mut self.spare);
        for (request, ptr) in self.pending.drain(..) {
            match request.test() {
                // SAFETY: the send completed, so MPI no longer reads the
                // buffer; `ptr` is the box leaked by `start`, freed once.
                Ok(_) => drop(unsafe { Box::from_raw(ptr) }),
                Err(request) => still.push((request, ptr)),
            }
        }
        self.spare = std::mem::replace(&mut self.pending, still);
    }

    /// Waits for every send under way, then frees its buffer.
    fn finish(&mut self) {
        for (request, ptr) in self.pending.drain(..) {
            request.wait();
            // SAFETY: as in `progress`: complete, freed once.
            drop(unsafe { Box::from_raw(ptr) });
        }
    }
}

/// Hands one arrived message to whoever waits for it; refuses what cannot
/// be routed.
fn route(
    s: &Shared,
    waiting: &mut HashMap<i32, mpsc::Sender<Vec<u8>>>,
    routes: &Routes,
    from: usize,
    kind: i32,
    body: Vec<u8>,
) {
    let inbox = match kind {
        tag::ARRIVE => Some(&routes.arrive),
        tag::RELEASE => Some(&routes.release),
        tag::NAME => Some(&routes.name),
        _ => None,
    };
    if let Some(inbox) = inbox {
        let _ = inbox.send((from, body));
        return;
    }
    if kind >= tag::FIRST_REPLY {
        if let Some(w) = waiting.remove(&kind) {
            let _ = w.send(body);
        } else {
            tracing::warn!(from, kind, "a reply nobody waits for; dropped");
        }
        return;
    }
    let Some((queue, reply_tag, rest)) = parse(&body) else {
        tracing::warn!(from, kind, "a malformed message; dropped");
        return;
    };
    // (The collective steps' tags inside this range were routed above.)
    if !(tag::PUT..=tag::LAST_REQUEST).contains(&kind) {
        s.reply(from, reply_tag, Err("an unknown request tag"));
        return;
    }
    let request = Request {
        from,
        reply_tag,
        kind,
        body: rest.to_vec(),
    };
    let handlers = s.handlers.lock().unwrap_or_else(PoisonError::into_inner);
    match handlers.get(&queue) {
        Some(h) => h(request),
        None => s.reply(from, reply_tag, Err("no such queue on this rank")),
    }
}

/// `[queue id u32][reply tag u32][body]`.
fn parse(body: &[u8]) -> Option<(u32, i32, &[u8])> {
    let queue = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    let reply = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?);
    let reply = i32::try_from(reply)
        .ok()
        .filter(|&t| t >= tag::FIRST_REPLY || t == tag::NO_REPLY)?;
    Some((queue, reply, &body[8..]))
}

/// A request's bytes, as `parse` reads them.
pub(crate) fn request(queue: u32, reply_tag: i32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&queue.to_le_bytes());
    v.extend_from_slice(&u32::try_from(reply_tag).unwrap_or(0).to_le_bytes());
    v.extend_from_slice(body);
    v
}
