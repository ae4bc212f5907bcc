//! A pool worker: the process that runs chunks of tasks.

use std::any::Any;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmproc_collections::bytes::{ByteConsumer, ByteProducer};
use shmproc_core::{RecvError, TryRecvError};

use crate::auth::Key;
use crate::bell::{Bell, SlotWords};
use crate::error::TaskFailure;
use crate::task::{self, Report, Trampoline};
use crate::wire::{self, ChunkView, Reader};

/// The exit code of a worker whose initializer panicked (it said so first).
pub(crate) const INIT_FAILED: i32 = 3;
/// The exit code of a worker that met a frame it cannot parse.
pub(crate) const BAD_FRAME: i32 = 4;

/// What a worker is started with.
#[derive(Serialize, Deserialize)]
pub(crate) struct Start<IA> {
    pub(crate) slot: u32,
    pub(crate) key: Key,
    pub(crate) tasks: ByteConsumer,
    pub(crate) results: ByteProducer,
    pub(crate) bell: Bell,
    /// Tasks after which it exits (0: no limit).
    pub(crate) max_tasks: u64,
    /// The initializer's arguments: the pool's shared input.
    pub(crate) init_args: IA,
}

/// A pool's initializer: `fn(IA) -> S`, a function or a closure that
/// captures nothing, run once in each worker.
pub trait Initializer<IA, S>: Copy + Send + Sync + 'static {
    /// Runs it.
    fn init(&self, args: IA) -> S;
}

impl<IA, S, F: Fn(IA) -> S + Copy + Send + Sync + 'static> Initializer<IA, S> for F {
    fn init(&self, args: IA) -> S {
        self(args)
    }
}

/// The worker process's target.
pub(crate) fn main<S, IA, I>(start: Start<IA>)
where
    S: 'static,
    IA: 'static,
    I: Initializer<IA, S>,
{
    task::install_panic_hook();
    shmproc_core::sys::membarrier_register();
    let Start {
        slot,
        key,
        mut tasks,
        mut results,
        bell,
        max_tasks,
        init_args,
    } = start;
    let slot = slot as usize;
    bell.slot(slot).hello(shmproc_sync::park::process_owner_id());
    let Some(mut state) = initialize::<S, IA, I>(init_args, &mut results, &bell) else {
        return;
    };
    let max = results.max_frame();
    let mut table: Vec<Trampoline> = Vec::new();
    let mut frame = Vec::new();
    let mut out = Vec::new();
    let mut ran = 0u64;
    loop {
        match next_task(&mut tasks, &mut frame) {
            Ok(()) => {}
            // The pool is gone: nothing to do.
            Err(RecvError::Disconnected) => return,
            Err(e) => {
                tracing::error!("pool worker: its task ring failed: {e}");
                std::process::exit(BAD_FRAME);
            }
        }
        let mut r = Reader::new(&frame);
        match r.u8() {
            Some(wire::REGISTER) => {
                let (Some(fn_id), Some(off), Some(tag)) = (r.u32(), r.u64(), r.u64()) else {
                    bad_frame("a short registration");
                };
                if fn_id as usize != table.len() || !key.verify(fn_id, off, tag) {
                    bad_frame("a registration out of order or not made by the pool");
                }
                let Ok(addr) = shmproc_core::process::code_address_of(off) else {
                    bad_frame("a registration naming no code of this executable");
                };
                // SAFETY: the offset came with a tag made under the pool's
                // key, which only the parent and its workers hold (it never
                // passes through shared memory), so the parent wrote it: it
                // is the offset of a `Trampoline` in the parent, which runs
                // this very executable (checked by the bootstrap, or a fork
                // of it), and `code_address_of` checked it lies in its code.
                let f = unsafe { std::mem::transmute::<*const (), Trampoline>(addr as *const ()) };
                table.push(f);
            }
            Some(wire::CHUNK) => {
                let chunk = match ChunkView::parse(r) {
                    Ok(c) => c,
                    Err(why) => bad_frame(&why),
                };
                let mut report = Reporter::new(&mut results, &bell, slot, chunk.first_seq, max);
                out.clear();
                out.resize(wire::DONE_HEAD, 0);
                let limit = max.saturating_sub(wire::DONE_HEAD);
                if let Some(f) = table.get(chunk.fn_id as usize) {
                    f(state.as_mut(), &chunk, &mut out, limit, &mut report);
                } else {
                    let failure = TaskFailure::NotRun(format!("function {} was never registered", chunk.fn_id));
                    for i in 0..chunk.len() {
                        report.start(i);
                        wire::push_result::<()>(&mut out, Err(&failure), limit);
                        if !report.done(i, &mut out) {
                            break;
                        }
                    }
                }
                if !report.flush(&mut out) {
                    return;
                }
                ran += u64::from(chunk.len());
                if max_tasks != 0 && ran >= max_tasks {
                    return;
                }
            }
            Some(wire::STOP) => return,
            _ => bad_frame("an unknown frame"),
        }
    }
}

/// Runs the initializer and says how it went: the state, or `None` when
/// the pool is gone. An initializer that panics is reported and the worker
/// exits.
fn initialize<S: 'static, IA, I: Initializer<IA, S>>(
    init_args: IA,
    results: &mut ByteProducer,
    bell: &Bell,
) -> Option<Box<dyn Any>> {
    let init: I = task::conjure::<I>();
    match task::run_caught(|| init.init(init_args)) {
        Ok(s) => {
            results.send(&[wire::READY]).ok()?;
            bell.ring();
            Some(Box::new(s))
        }
        Err(failure) => {
            let cause = match failure {
                TaskFailure::Panicked(m) => m,
                other => other.to_string(),
            };
            let mut frame = vec![wire::INIT_FAILED];
            frame.extend_from_slice(cause.as_bytes());
            frame.truncate(results.max_frame());
            let _ = results.send(&frame);
            bell.ring();
            std::process::exit(INIT_FAILED);
        }
    }
}

/// How long an idle worker looks for its next task before it sleeps: about
/// what a wake-up costs on a VM, so a task that follows soon is taken
/// without one.
const SPIN: Duration = Duration::from_micros(50);

/// Takes the next frame of the task ring: spinning a little, then waiting.
fn next_task(tasks: &mut ByteConsumer, frame: &mut Vec<u8>) -> Result<(), RecvError> {
    match tasks.try_recv(frame) {
        Ok(()) => return Ok(()),
        Err(TryRecvError::Empty) => {}
        Err(_) => return tasks.recv(frame),
    }
    let until = Instant::now() + SPIN;
    while Instant::now() < until {
        for _ in 0..4 {
            std::hint::spin_loop();
        }
        match tasks.try_recv(frame) {
            Ok(()) => return Ok(()),
            Err(TryRecvError::Empty) => std::thread::yield_now(),
            Err(_) => break,
        }
    }
    tasks.recv(frame)
}

/// A frame the parent would never write: the ring was scribbled on. The
/// worker exits; the pool sees it die and replaces it.
fn bad_frame(why: &str) -> ! {
    tracing::error!("pool worker: {why} in its task ring; exiting");
    std::process::exit(BAD_FRAME)
}

/// How long results may wait in a worker before it sends them: a worker
/// that dies loses (and the pool runs again) at most about this much of
/// finished work.
const FLUSH: Duration = Duration::from_micros(100);

/// Sends a chunk's results as they come: in one frame for a quick chunk,
/// and every [`FLUSH`] during a long one. Reads the clock only every
/// `every` tasks, a stride that grows while tasks are quick.
struct Reporter<'a> {
    results: &'a mut ByteProducer,
    bell: &'a Bell,
    words: SlotWords<'a>,
    first_seq: u64,
    max: usize,
    /// Tasks of the chunk already sent.
    sent: u32,
    /// Where each unsent result ends in `out`.
    ends: Vec<usize>,
    /// When the unsent results began.
    began: Instant,
    every: u32,
    since: u32,
    gone: bool,
}

impl<'a> Reporter<'a> {
    fn new(results: &'a mut ByteProducer, bell: &'a Bell, slot: usize, first_seq: u64, max: usize) -> Self {
        Self {
            results,
            bell,
            words: bell.slot(slot),
            first_seq,
            max,
            sent: 0,
            ends: Vec::new(),
            began: Instant::now(),
            every: 1,
            since: 0,
            gone: false,
        }
    }

    /// Sends the unsent results (`out` after its head); false when the pool
    /// is gone.
    fn flush(&mut self, out: &mut Vec<u8>) -> bool {
        if self.gone {
            return false;
        }
        if self.ends.is_empty() {
            return true;
        }
        let n = u32::try_from(self.ends.len()).expect("a chunk holds fewer than 2^32 tasks");
        let busy = u64::try_from(self.began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let first = self.first_seq + u64::from(self.sent);
        let ok = if out.len() > self.max {
            // Every result fits alone, not all of them together.
            send_split(self.results, out, &self.ends, first, busy, self.max)
        } else {
            let mut head = Vec::with_capacity(wire::DONE_HEAD);
            wire::done_head(&mut head, first, n, busy);
            out[..wire::DONE_HEAD].copy_from_slice(&head);
            self.results.send(out).is_ok()
        };
        self.bell.ring();
        self.sent += n;
        self.ends.clear();
        out.truncate(wire::DONE_HEAD);
        self.began = Instant::now();
        self.gone = !ok;
        ok
    }
}

impl Report for Reporter<'_> {
    #[inline]
    fn start(&mut self, i: u32) {
        self.words.start(self.first_seq + u64::from(i));
    }

    #[inline]
    fn done(&mut self, _i: u32, out: &mut Vec<u8>) -> bool {
        self.words.done();
        self.ends.push(out.len());
        self.since += 1;
        if self.since < self.every {
            return true;
        }
        self.since = 0;
        let waited = self.began.elapsed();
        if waited >= FLUSH {
            return self.flush(out);
        }
        if waited < FLUSH / 4 {
            self.every = (self.every * 2).min(1024);
        }
        true
    }
}

/// Sends results too large for one frame as several, cut at result
/// boundaries (`ends`: where each result ends in `out`; each result alone
/// fits, as the trampoline checked).
fn send_split(results: &mut ByteProducer, out: &[u8], ends: &[usize], first_seq: u64, busy: u64, max: usize) -> bool {
    let mut part = Vec::new();
    let mut start = wire::DONE_HEAD;
    let mut i = 0;
    while i < ends.len() {
        let mut j = i;
        while j < ends.len() && ends[j] - start + wire::DONE_HEAD <= max {
            j += 1;
        }
        let j = j.max(i + 1);
        let n = u32::try_from(j - i).expect("a chunk holds fewer than 2^32 tasks");
        // The busy time goes with the first part.
        wire::done_head(&mut part, first_seq + i as u64, n, if i == 0 { busy } else { 0 });
        part.extend_from_slice(&out[start..ends[j - 1]]);
        if results.send(&part).is_err() {
            return false;
        }
        start = ends[j - 1];
        i = j;
    }
    true
}
