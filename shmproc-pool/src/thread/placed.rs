//! The thread pool's synchronous `map` and `starmap`: each chunk writes its
//! results in place into the output vector, in its own range, so that a map
//! of quick tasks costs no buffer per chunk and no copy of its results.

use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Call, ThreadPool, Work};
use crate::error::{PoolError, TaskError, TaskFailure};
use crate::job::{Abort, Batch, Job, SPIN, State};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::task::payload_message;

/// The output of a placed map: room for `cap` values. A chunk writes its
/// range, then records in `filled` which of its slots hold a value.
struct Out<R> {
    ptr: NonNull<R>,
    cap: usize,
    /// `(first, n, positions that failed)` per chunk that ran.
    filled: Mutex<Vec<(usize, usize, Vec<usize>)>>,
}

// SAFETY: an `Out` moves `R` values from the threads that make them to the
// caller (or to whoever drops it last), which `R: Send` allows; its slots
// are written by one chunk each, in disjoint ranges, and read only once
// every writer is done (see `into_vec` and `Drop`).
unsafe impl<R: Send> Send for Out<R> {}
// SAFETY: as for `Send`: shared references only reach the disjoint writes
// of the chunks and the `filled` list, which a mutex guards.
unsafe impl<R: Send> Sync for Out<R> {}

impl<R> Out<R> {
    fn new(cap: usize) -> Self {
        let mut v = ManuallyDrop::new(Vec::<R>::with_capacity(cap));
        Self {
            ptr: NonNull::new(v.as_mut_ptr()).expect("a Vec's pointer is never null"),
            cap: v.capacity(),
            filled: Mutex::new(Vec::new()),
        }
    }

    /// Writes `value` into slot `i`.
    ///
    /// # Safety
    ///
    /// `i < self.cap`, and no one else writes slot `i` or reads it before
    /// the writer is done with this `Out` (each chunk owns its range).
    unsafe fn write(&self, i: usize, value: R) {
        // SAFETY: `i < cap` by the caller's contract: in bounds of the
        // allocation.
        let slot = unsafe { self.ptr.as_ptr().add(i) };
        // SAFETY: in bounds, aligned (a `Vec<R>`'s slot), and this caller's
        // alone by the contract.
        unsafe { slot.write(value) };
    }

    /// The first `len` values as a vector.
    ///
    /// # Safety
    ///
    /// Every slot in `0..len` holds a value (each chunk covering it ran
    /// and none of its tasks failed), and no chunk still holds this `Out`.
    unsafe fn into_vec(self, len: usize) -> Vec<R> {
        let me = ManuallyDrop::new(self);
        // SAFETY: `filled` is read out once and the rest forgotten, so it
        // is neither leaked nor dropped twice.
        drop(unsafe { std::ptr::read(&raw const me.filled) });
        // SAFETY: `ptr` and `cap` came from a `Vec<R>` of that capacity,
        // and by the contract its first `len <= cap` slots hold values.
        unsafe { Vec::from_raw_parts(me.ptr.as_ptr(), len, me.cap) }
    }
}

impl<R> Drop for Out<R> {
    /// A map that failed or was terminated: drops the values written, then
    /// frees the room.
    fn drop(&mut self) {
        let filled = std::mem::take(self.filled.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner));
        for (first, n, failed) in filled {
            for i in (0..n).filter(|i| failed.binary_search(i).is_err()) {
                // SAFETY: `first + i < cap`: chunks are cut within the room.
                let slot = unsafe { self.ptr.as_ptr().add(first + i) };
                // SAFETY: the chunk of `first..first + n` recorded that it
                // wrote every slot but the failed ones, and it no longer
                // holds this `Out` (we are its last owner).
                unsafe { std::ptr::drop_in_place(slot) };
            }
        }
        // SAFETY: `ptr` and `cap` came from a `Vec<R>` of that capacity;
        // every value in it was dropped above, so it is freed empty.
        drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), 0, self.cap) });
    }
}

/// What a chunk reports: how many tasks it ran, and the failures.
#[derive(Debug)]
pub(crate) struct Mark {
    n: usize,
    errors: Vec<TaskError>,
}

impl Batch for Mark {
    fn tasks(&self) -> usize {
        self.n
    }
}

/// Tasks `first ..` of a placed map. The task is its own type `G` (not a
/// `dyn Fn`), so the loop over a chunk calls it directly and a quick task
/// is inlined.
struct Placed<S, A, R, G> {
    f: Arc<G>,
    _state: std::marker::PhantomData<fn(&mut S)>,
    first: usize,
    args: Vec<A>,
    out: Arc<Out<R>>,
    job: Arc<Job<Mark>>,
}

impl<S, A: Send, R: Send, G> Work<S> for Placed<S, A, R, G>
where
    G: Fn(&mut S, A) -> R + Send + Sync,
{
    fn run(self: Box<Self>, state: &mut S, worker: &Arc<str>, done: &AtomicU64) {
        let Self {
            f,
            first,
            args,
            out,
            job,
            ..
        } = *self;
        let n = args.len();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for (i, a) in args.into_iter().enumerate() {
            match catch_unwind(AssertUnwindSafe(|| f(state, a))) {
                // SAFETY: `first + i < first + n <= out.cap`: the caller cut
                // the chunks within the output's room; this chunk alone
                // writes `first..first + n`, once each.
                Ok(v) => unsafe { out.write(first + i, v) },
                Err(p) => {
                    failed.push(i);
                    errors.push(TaskError {
                        index: first + i,
                        worker: worker.to_string(),
                        failure: TaskFailure::Panicked(payload_message(p.as_ref())),
                    });
                }
            }
            // Relaxed: a progress count only this thread writes.
            done.store(done.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        out.filled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((first, n, failed));
        // Let go of the output before saying the chunk is done: when the
        // caller sees every chunk done, it owns the output alone.
        drop(out);
        job.deliver(Mark { n, errors });
    }

    fn abort(self: Box<Self>, why: Abort) {
        self.job.abort(why);
    }
}

impl<S: 'static> ThreadPool<S> {
    /// `map` with each result written in place (see the module docs).
    pub(crate) fn map_placed<A, R, G>(
        &self,
        f: Arc<G>,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        G: Fn(&mut S, A) -> R + Send + Sync + 'static,
    {
        self.check_open()?;
        if chunksize == Some(0) {
            return Err(PoolError::ZeroChunksize);
        }
        let items = items.into_iter();
        // The output's room needs the length: an input that does not say
        // it exactly is read whole first. Either way the chunks are cut by
        // code made for the iterator's own type (no call through a `dyn`
        // per item: for quick tasks that was the caller's bottleneck).
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => self.map_placed_from(f, items, lo, chunksize),
            _ => {
                let all: Vec<A> = items.collect();
                let n = all.len();
                self.map_placed_from(f, all.into_iter(), n, chunksize)
            }
        }
    }

    /// [`Self::map_placed`] over `items`, which said it has `len` items.
    fn map_placed_from<A, R, G>(
        &self,
        f: Arc<G>,
        mut items: impl Iterator<Item = A>,
        len: usize,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        G: Fn(&mut S, A) -> R + Send + Sync + 'static,
    {
        let chunksize = chunksize.unwrap_or_else(|| crate::pool::default_chunksize(len, self.processes()));
        let out = Arc::new(Out::<R>::new(len));
        let job: Arc<Job<Mark>> = Job::new(None);
        let mut base = 0;
        // At most one chunk more than there are threads is cut and not yet
        // run: memory for the input stays bounded, and a chunk's room is
        // often the room of one that ran (already touched, so cutting it
        // costs a copy, not fresh pages: for quick tasks the caller's page
        // faults were the map's cost).
        let window = self.processes() + 1;
        let mut issued = 0;
        while base < len {
            if issued >= window {
                let st = job.wait_spinning(None, Duration::ZERO, |st| {
                    st.frames.len() + window > issued || st.aborted.is_some()
                });
                if st.aborted.is_some() {
                    break;
                }
            }
            // Never past the room, whatever the input yields.
            let chunk: Vec<A> = items.by_ref().take(chunksize.min(len - base)).collect();
            let n = chunk.len();
            if n == 0 {
                break;
            }
            job.submitted(n, false);
            self.queue(Box::new(Placed {
                f: Arc::clone(&f),
                _state: std::marker::PhantomData,
                first: base,
                args: chunk,
                out: Arc::clone(&out),
                job: Arc::clone(&job),
            }));
            base += n;
            issued += 1;
        }
        job.submitted(0, true);
        // An input longer than it said goes the ordinary way.
        let rest: Vec<A> = items.collect();
        let rest = if rest.is_empty() {
            None
        } else {
            let call: Call<S, A, R> = f.clone();
            let extra = self.submit(call, rest, Some(chunksize), None)?;
            Some(crate::job::collect_streaming::<R, _>(&extra).map_err(|e| match e {
                PoolError::Task(mut t) => {
                    t.index += base;
                    PoolError::Task(t)
                }
                other => other,
            }))
        };
        let spin = if len <= 2 { SPIN } else { Duration::ZERO };
        let st = job.wait_spinning(None, spin, State::complete);
        if let Some(a) = &st.aborted {
            return Err(a.error());
        }
        let first_err = st
            .frames
            .iter()
            .flat_map(|m| m.errors.iter())
            .min_by_key(|e| e.index)
            .cloned();
        drop(st);
        if let Some(e) = first_err {
            return Err(PoolError::Task(e));
        }
        // Every chunk let go of the output before it reported.
        let mut out = out;
        let out = loop {
            match Arc::try_unwrap(out) {
                Ok(o) => break o,
                Err(o) => {
                    out = o;
                    std::thread::yield_now();
                }
            }
        };
        // SAFETY: the job completed, not aborted, without a failure: every
        // chunk covering `0..base` ran every task and wrote its slot, and
        // `try_unwrap` shows no chunk holds the output any more.
        let mut values = unsafe { out.into_vec(base) };
        if let Some(rest) = rest {
            values.extend(rest?);
        }
        Ok(values)
    }
}
