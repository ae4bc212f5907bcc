//! Task functions, and the one function per call shape that runs a chunk of
//! them in a worker (its "trampoline").
//!
//! A task function is a function item or a non-capturing closure: a
//! zero-sized type. Its code is part of the trampoline monomorphised for
//! it, so the only thing that travels to a worker is the trampoline's code
//! offset, sent authenticated (see `auth`). The worker conjures the
//! zero-sized function value, which is a copy of the caller's (it has no
//! bytes, and the function is `Copy`).

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TaskFailure;
use crate::wire;

/// Marks a task function that takes its argument only.
#[derive(Debug)]
pub enum Plain {}
/// Marks a task function that takes the worker's state first (`&mut S`,
/// what the pool's initializer returned), as mpire's `worker_state`.
#[derive(Debug)]
pub enum WithState {}

/// A function a pool maps over its input: `fn(A) -> R`, or
/// `fn(&mut S, A) -> R` to use the worker's state. For a process pool it
/// must be a function item or a closure that captures nothing (checked when
/// the call compiles); a thread pool also takes capturing closures through
/// its own methods.
pub trait Task<S, A, R, M>: Copy + Send + Sync + 'static {
    /// Runs it.
    fn run(&self, state: &mut S, arg: A) -> R;
}

impl<S, A, R, F> Task<S, A, R, Plain> for F
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
{
    #[inline]
    fn run(&self, _state: &mut S, arg: A) -> R {
        self(arg)
    }
}

impl<S, A, R, F> Task<S, A, R, WithState> for F
where
    F: Fn(&mut S, A) -> R + Copy + Send + Sync + 'static,
{
    #[inline]
    fn run(&self, state: &mut S, arg: A) -> R {
        self(state, arg)
    }
}

/// A function `starmap` and `apply` call with the fields of a tuple as its
/// arguments: `fn(A, B) -> R` with `(A, B)` items (up to six), or with the
/// worker's state first.
pub trait StarTask<S, Args, R, M>: Copy + Send + Sync + 'static {
    /// Runs it.
    fn run(&self, state: &mut S, args: Args) -> R;
}

macro_rules! star_task {
    ($($a:ident),*) => {
        impl<S, R, F, $($a),*> StarTask<S, ($($a,)*), R, Plain> for F
        where
            F: Fn($($a),*) -> R + Copy + Send + Sync + 'static,
        {
            #[inline]
            #[allow(non_snake_case)]
            fn run(&self, _state: &mut S, ($($a,)*): ($($a,)*)) -> R {
                self($($a),*)
            }
        }
        impl<S, R, F, $($a),*> StarTask<S, ($($a,)*), R, WithState> for F
        where
            F: Fn(&mut S, $($a),*) -> R + Copy + Send + Sync + 'static,
        {
            #[inline]
            #[allow(non_snake_case)]
            fn run(&self, state: &mut S, ($($a,)*): ($($a,)*)) -> R {
                self(state, $($a),*)
            }
        }
    };
}
star_task!();
star_task!(A1);
star_task!(A1, A2);
star_task!(A1, A2, A3);
star_task!(A1, A2, A3, A4);
star_task!(A1, A2, A3, A4, A5);
star_task!(A1, A2, A3, A4, A5, A6);

/// One call of a task on a worker's state and one argument: the shape the
/// trampoline runs, for `map` and for `starmap` alike.
pub(crate) trait Call<S, A, R>: Copy + Send + Sync + 'static {
    fn call(&self, state: &mut S, arg: A) -> R;
}

/// `map`'s call.
pub(crate) struct MapCall<F, M>(F, PhantomData<fn() -> M>);
/// `starmap`'s call.
pub(crate) struct StarCall<F, M>(F, PhantomData<fn() -> M>);

impl<F: Copy, M> Clone for MapCall<F, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Copy, M> Copy for MapCall<F, M> {}
impl<F: Copy, M> Clone for StarCall<F, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Copy, M> Copy for StarCall<F, M> {}

impl<S, A, R, M: 'static, F: Task<S, A, R, M>> Call<S, A, R> for MapCall<F, M> {
    #[inline]
    fn call(&self, state: &mut S, arg: A) -> R {
        self.0.run(state, arg)
    }
}
impl<S, A, R, M: 'static, F: StarTask<S, A, R, M>> Call<S, A, R> for StarCall<F, M> {
    #[inline]
    fn call(&self, state: &mut S, arg: A) -> R {
        self.0.run(state, arg)
    }
}

/// Where a worker's trampoline reports as it runs a chunk: which task it
/// is on (for the pool to blame the right one if the worker dies), and each
/// result once appended to `out` (the reporter sends results in frames,
/// during a long chunk too, so that a death loses little).
pub(crate) trait Report {
    /// Task `i` of the chunk starts.
    fn start(&mut self, i: u32);
    /// Task `i`'s result was appended to `out`; false when the pool is
    /// gone (the chunk is abandoned).
    fn done(&mut self, i: u32, out: &mut Vec<u8>) -> bool;
}

/// Runs the tasks of one chunk: appends one encoded `Result<R, TaskFailure>`
/// per task to `out` (never more than `max` bytes for one) and tells
/// `report` about each.
pub(crate) type Trampoline =
    fn(state: &mut dyn Any, chunk: &wire::ChunkView<'_>, out: &mut Vec<u8>, max: usize, report: &mut dyn Report);

/// The trampoline of call `C` over a worker state `S`.
pub(crate) fn trampoline<S, A, R, C>(
    state: &mut dyn Any,
    chunk: &wire::ChunkView<'_>,
    out: &mut Vec<u8>,
    max: usize,
    report: &mut dyn Report,
) where
    S: 'static,
    A: DeserializeOwned,
    R: Serialize,
    C: Call<S, A, R>,
{
    let f: C = conjure::<C>();
    let Some(state) = state.downcast_mut::<S>() else {
        for i in 0..chunk.len() {
            report.start(i);
            let failure = TaskFailure::NotRun("the worker's state is not the pool's state type".into());
            wire::push_result::<R>(out, Err(&failure), max);
            if !report.done(i, out) {
                return;
            }
        }
        return;
    };
    for i in 0..chunk.len() {
        report.start(i);
        let outcome = match postcard::from_bytes::<A>(chunk.arg(i)) {
            Err(e) => Err(TaskFailure::DecodeArgument(e.to_string())),
            Ok(arg) => run_caught(|| f.call(state, arg)),
        };
        match &outcome {
            Ok(r) => wire::push_result::<R>(out, Ok(r), max),
            Err(e) => wire::push_result::<R>(out, Err(e), max),
        }
        if !report.done(i, out) {
            return;
        }
    }
}

/// A copy of the zero-sized function value `C` (also what `shmproc-mpi`
/// conjures the functions sent between ranks with; not API).
#[doc(hidden)]
#[inline]
pub fn conjure<C: Copy>() -> C {
    const {
        assert!(
            size_of::<C>() == 0,
            "a function sent to another process (a pool's task or initializer, a container's modify on \
             another rank) must be a function item or a closure that captures nothing"
        );
    };
    // SAFETY: `C` has no bytes (checked above), so any pointer aligned for
    // it reads a value; it is `Copy`, and the pool's caller held a value of
    // it (the task function or initializer the pool was given, which is
    // `Send`), so this is a copy of that value, as sending it would make.
    unsafe { std::ptr::NonNull::<C>::dangling().as_ptr().read() }
}

thread_local! {
    /// The message of the last panic on this thread, kept by the worker's
    /// panic hook (message and location, as the default hook prints).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the worker's panic hook: it keeps the message for the task's
/// error instead of printing it (the caller gets it).
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
    }));
}

/// Runs `f`, turning a panic into [`TaskFailure::Panicked`].
pub(crate) fn run_caught<T>(f: impl FnOnce() -> T) -> Result<T, TaskFailure> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let kept = LAST_PANIC.with(|p| p.borrow_mut().take());
        TaskFailure::Panicked(kept.unwrap_or_else(|| payload_message(payload.as_ref())))
    })
}

/// The message of a panic payload.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// The code offset of `f`'s code in this executable, for a worker to find
/// the same function.
pub(crate) fn offset_of(f: Trampoline) -> Result<u64, shmproc_core::ProcessError> {
    shmproc_core::process::code_offset_of(f as *const () as usize)
}
