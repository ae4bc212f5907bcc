//! shmproc: Python's `multiprocessing`, rebuilt so that every shared object lives
//! directly in shared memory. The README is the tour; [`how_it_works`] is
//! the design: segments, handles, the algorithms, the `mpi` feature, the
//! crates.
//!
//! ```no_run
//! use shmproc::prelude::*;
//!
//! fn child(counter: RawValue<u64>) {
//!     counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     shmproc::init(); // first line of main: children dispatch here
//!     let counter = RawValue::new(0u64)?;
//!     let p = Process::new(child, counter.clone());
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 1);
//!     Ok(())
//! }
//! ```
//!
//! # One vocabulary
//!
//! Every object speaks the same forms, with Python's names where Python
//! has the concept: a blocking call, a `try_` call that never waits, and a
//! `_timeout(Duration)` call. Whatever is acquired comes back as a guard
//! that releases it when dropped.
//!
//! | objects | blocking | never waits | waits at most `d` | errors |
//! |---|---|---|---|---|
//! | shared queues: [`Queue`], [`JoinableQueue`], [`SimpleQueue`], [`mpmc::Mpmc`] | `put(v)`, `get()` | `try_put(v)`, `try_get()` | `put_timeout(v, d)`, `get_timeout(d)` | [`SendError`], [`TrySendError`], [`SendTimeoutError`]; [`RecvError`], [`TryRecvError`], [`RecvTimeoutError`] |
//! | ends of a channel: [`spsc`] producer and consumer, [`bytes`] ends, [`duplex`] ends, [`Connection`] | `send(v)`, `recv()` | `try_send(v)`, `try_recv()` | `send_timeout(v, d)`, `recv_timeout(d)` | the same (a [`Connection`] has Python's [`PipeError`]) |
//! | zero-copy loans of the rings | `reserve()`, `peek()` | `try_reserve()`, `try_peek()` | `reserve_timeout(d)`, `peek_timeout(d)` | the same, without a value to hand back |
//! | locks: [`Lock`], [`RLock`], a [`Condition`]'s lock, the lock of a [`Value`] or [`Array`] | `acquire()` → guard | `try_acquire()` | `acquire_timeout(d)` | [`OwnerDied`], [`TryAcquireError`], [`AcquireTimeoutError`] |
//! | semaphores: [`Semaphore`], [`BoundedSemaphore`] | `acquire()` → guard | `try_acquire()` | `acquire_timeout(d)` | [`TryAcquireError`], [`AcquireTimeoutError`]; `release()` adds a permit |
//! | waits: [`Event`], [`Barrier`], a condition's guard, [`JoinableQueue::join`], [`Process::join`] | `wait()`, `join()` | `is_set()`, `is_alive()` | `wait_timeout(d)`, `join_timeout(d)` | a flag where Python returns one; [`BarrierError`] |
//! | values: [`RawValue`], [`RawArray`], [`Value`], [`Array`] | `get()`, `set(v)`, `update(f)` | the same | | [`OutOfBounds`] |
//! | manager containers: [`Dict`], [`List`], [`Namespace`] | `get(k)`, `set(k, v)`, `modify(k, f)` | every call (reads take no lock; a write waits only for another write) | | [`ManagerError`]: `KeyNotFound`, `IndexOutOfRange`, `NoAttribute`, `Corrupted`, ... |
//! | served objects: [`Proxy`] | `call(m, args)`, `getattr(a)`, `setattr(a, v)` | | | [`ManagerError`]: `NoMethod`, `MethodFailed`, `ManagerGone` |
//! | names: every object above | `X::create_named(name, ...)`, `X::open(name)` | | | [`SegmentError`] |
//!
//! A send that fails hands the value back (`Full(v)`, `Timeout(v, d)`,
//! `Disconnected(v)`, `into_inner()`), so nothing is lost; a timeout is
//! never confused with a full or empty object, and says how long it waited.
//! Every error converts into [`Error`], so `?` works in `main` and in
//! process targets returning `Result<_, shmproc::Error>` or
//! `Box<dyn std::error::Error>`:
//!
//! ```
//! use shmproc::prelude::*;
//!
//! fn work((lock, n): (Lock, RawValue<u64>)) -> Result<(), Box<dyn std::error::Error>> {
//!     let _g = lock.acquire()?;
//!     n.set(n.get() + 1);
//!     Ok(())
//! }
//!
//! fn work_too((lock, n): (Lock, RawValue<u64>)) -> Result<(), shmproc::Error> {
//!     let _g = lock.acquire()?;
//!     n.set(n.get() + 1);
//!     Ok(())
//! }
//! # let (lock, n) = (Lock::new()?, RawValue::new(0_u64)?);
//! # work((lock.clone(), n.clone())).expect("no one died");
//! # work_too((lock, n.clone()))?;
//! # assert_eq!(n.get(), 2);
//! # Ok::<(), shmproc::Error>(())
//! ```
//!
//! A lock whose holder died is not silently handed over: `acquire` returns
//! [`OwnerDied`] to everyone until one process calls `recover()`, repairs
//! what the lock guards, and marks the lock consistent.
//!
//! # Pools
//!
//! [`Pool`] is Python's `Pool` over worker processes fed through
//! shared-memory rings: `map`, `imap`, `imap_unordered`, `starmap`,
//! `apply` and their `_async` forms, with Python's default chunk size,
//! `close`, `join` and `terminate`. Tasks are functions (or closures that
//! capture nothing) with serde arguments and results; an initializer may
//! give each worker a state that tasks of the form `fn(&mut S, A) -> R`
//! use. A task that panics fails alone, with its message; a worker that
//! dies is replaced and only the task it was running fails
//! ([`TaskFailure::WorkerDied`], or it runs again with `retries`); a task
//! past the pool's `task_timeout` has its worker killed and fails alone;
//! an initializer that fails makes the pool report
//! [`PoolError::Initializer`] instead of starting workers in a loop. No
//! call hangs on a dead worker.
//!
//! ```no_run
//! use shmproc::prelude::*;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), shmproc::Error> {
//!     shmproc::init();
//!     let pool = Pool::new(4)?;
//!     assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
//!     for (i, r) in pool.imap(square, 0..)?.take(3).enumerate() {
//!         assert_eq!(r?, (i * i) as u64);
//!     }
//!     let r = pool.apply_async(square, (7,))?;
//!     assert_eq!(r.get_timeout(std::time::Duration::from_secs(5))?, 49);
//!     Ok(())
//! }
//! ```
//!
//! A worker that dies after finishing tasks it had not yet reported (it
//! reports at least every 100 us) loses those results; the pool runs them
//! again, so such a task may run twice, though its result is delivered
//! once.
//!
//! # Start methods and threads
//!
//! Children start by `forkserver` (the default), `spawn` or `fork`
//! ([`StartMethod`]). After a fork only the forking thread exists, so a fork
//! child of a multi-threaded process could deadlock on a lock another thread
//! held: a fork start (chosen with [`Process::with_start_method`], for the
//! whole program with `SHM_START_METHOD=fork`, or implied by
//! [`Process::from_closure`]) in a process that runs more than one thread
//! fails with [`ProcessError::ForkWithThreads`], which names spawn and
//! forkserver as the methods to use there. [`init`] may be called again in
//! any child, whatever its start method: it returns at once.
//!
//! # Trust model
//!
//! Every object of this crate lives in a shared segment that other
//! processes map and write. This section says whom the library trusts with
//! those bytes, what it checks, and what a misbehaving peer can and cannot
//! do to your process. Every promise elsewhere in these docs is made under
//! this model.
//!
//! **Who may write a segment.** An anonymous segment (the default, a
//! `memfd`) can be mapped only by processes that hold its descriptor: the
//! ones this library started and handed the object to, and their
//! descendants. A named segment (`RawValue::create_named`, say) is a POSIX
//! shm object of mode 0600, so any process of the same user can open it.
//! All of these are assumed to run this library, and any of them may
//!
//! - **die at any instruction** (SIGKILL, the OOM killer, a crash), in the
//!   middle of any operation, holding any lock;
//! - **be buggy**: write any byte of the segment, at any time, concurrently
//!   with your process (a "scribble"), including a pid that names some other
//!   live process, an index past the end of a ring, or a length of 4 GiB.
//!
//! Processes of other users cannot reach a segment at all. A process of the
//! same user can also `ptrace` yours, so nothing stronger than the above can
//! be promised against it; it counts as a scribbler.
//!
//! **What is validated.** Nothing read from shared memory is trusted:
//!
//! - a segment's header (magic, layout version, type size, alignment and name
//!   hash, lengths, initialisation state) when it is attached: a mismatch is
//!   a distinct error (`BadMagic`, `VersionMismatch`, `TypeMismatch`, ...);
//! - every index, position, length, count, sequence number, state word and
//!   owner word before it is used: indices are masked or bounds-checked,
//!   lengths are checked against what was published and against the end of
//!   the ring, a state that no legal history can produce is `Corrupted`;
//! - a lock owner is a pid together with a 9-bit tag of the process's start
//!   time, set by the same compare-and-swap that takes the lock, so a reused
//!   pid or a word that names a live process that never took the lock is
//!   taken over as `OwnerDied`, except when the tag happens to match (one
//!   chance in 511: a timed call then times out, an untimed one waits for
//!   that process to end). The words that name a ring end's holder, a
//!   queue's users and an MPMC slot's claimant hold the same owner ids, so
//!   a reused pid reads as dead there too; a claim held by a live process
//!   is waited on within the call's timeout, a `try_` call does not wait
//!   for it, and an untimed MPMC call reports `Fault::Stalled` after
//!   `mpmc::CLAIM_BOUND`.
//!
//! **What a scribbling peer can cause**, in the objects it scribbles on and
//! only there:
//!
//! - errors: `Corrupted`, `OwnerDied`, `Disconnected` and the like, each
//!   saying what was expected and what was found;
//! - wrong payload values: payload bytes are data, every bit pattern of a
//!   payload type is valid (its [`ShmSafe`] bound, proven by zerocopy), and
//!   copies in and out of shared memory go through atomic words, so a
//!   racing writer yields a torn or wrong value, never a data race;
//! - lost or repeated messages in the ring or queue it scribbled on.
//!
//! It can never cause undefined behaviour in another process, a panic in
//! another process, or a hang past the documented bound: every blocking call
//! honours its timeout, and a call without one re-checks its peers at least
//! every [`LIVENESS_SLICE`] and returns an error when they are gone or the
//! words it waits on cannot move. One wait is bounded by a peer's life
//! rather than by the timeout: once a byte ring, pipe or queue reader has
//! taken the first part of a message streamed in parts (one larger than half
//! the ring), it waits for the rest until the writer sends it, closes or
//! dies, because giving up would drop a real message of a slow writer; a
//! forged first part from a writer that stays alive and idle holds that
//! reader as long. No Rust reference (`&T`, `&[T]`) covers bytes another
//! process may write, with the one exception below.
//!
//! **What the zero-copy read loans trust.** A read loan hands out a `&T`
//! (the SPSC ring's `peek`) or a `&[u8]` (the byte ring's `peek`) that
//! points into a slot the producer has published and must not touch until
//! the loan is released. That reference is sound only while the peer keeps
//! this protocol: a peer that writes a slot it has published, while you hold
//! the loan, is a data race in your process. Use the loans between processes
//! that run your own code; where the writer is not trusted, use the copying
//! path (`try_recv`/`recv`, `recv_bytes`, `Queue::get`), which copies
//! the slot through atomic words and validates it before use. Write loans
//! (`reserve`) lend slots no reader looks at until they are committed.
//!
//! **Function references** (a process target, a barrier action) name code
//! by offset in the executable. They are accepted only from the bootstrap
//! channel of a process this library started, after the child has checked
//! that it runs the very same executable file; deserialising one from any
//! other bytes (a queue, a pipe, a file) is an error, never a call.
//! A [`Pool`] names its task functions to its workers through their task
//! rings, which are shared memory: each such registration carries a tag
//! (SipHash-2-4) made under a 128-bit key drawn for the pool and handed to
//! each worker among its start arguments, which never pass through shared
//! memory. A worker accepts a registration only with the right tag, so
//! bytes a scribbler writes into a task ring can fail tasks or kill that
//! worker (the pool replaces it), never name code.
//!
//! **Liveness.** A blocked call notices a dead peer (or a lock holder
//! that died) within [`LIVENESS_SLICE`]; a process killed at any instruction
//! leaves every object either as before or as after the operation it was
//! in, or flags it (`OwnerDied`: the data the lock guards may be
//! inconsistent), and never wedges the others.

pub use shmproc_collections::pipe::{Connection, Pipe, PipeEnd, PipeError};
pub use shmproc_collections::queue::{JoinableQueue, Queue, SimpleQueue, TaskDoneError};
pub use shmproc_collections::{bytes, duplex, mpmc, pipe, queue, spsc};
pub use shmproc_core::{
    AtomicInteger, BootstrapError, Context, ContextError, CurrentProcess, Error, ErrorKind, ExitReport, Fault, FnRef,
    HandleError, LIVENESS_SLICE, OutOfBounds, ParentProcess, Process, ProcessError, RawArray, RawValue, RecvError,
    RecvTimeoutError, Segment, SegmentError, SegmentInfo, SegmentKind, SegmentObject, SendError, SendTimeoutError,
    ShmSafe, StartMethod, TryRecvError, TrySendError, TypeIdentity, Worker, active_children, cpu_count,
    current_process, forkserver_pid, get_all_start_methods, get_context, get_start_method, log_to_stderr,
    parent_process, set_start_method,
};
// Hidden: how sibling crates give a segment-backed object its serde impls.
#[doc(hidden)]
pub use shmproc_core::segment_object;
// Hidden: the platform layer, the handle codec, liveness and the sleeper's
// spin tuning are the floor the objects stand on, not API; they stay
// reachable for this workspace's tests, benches and command.
#[doc(hidden)]
pub use shmproc_core::{array, atomic, handle, liveness, process, segment, sys, value};
pub use shmproc_manager::{
    CallFailure, Dict, Dynamic, List, Manager, ManagerBuilder, ManagerError, Namespace, Proxy, Reply, Served, served,
};
pub use shmproc_pool::{
    AsyncResult, Exit, IMap, Initializer, Pool, PoolApi, PoolBuilder, PoolError, StarTask, Task, TaskError,
    TaskFailure, ThreadPool, ThreadPoolBuilder,
};
#[doc(hidden)]
pub use shmproc_sync::park;
/// Call at the top of `main`, before anything else: a spawned child runs
/// its target here and never returns, and the fork server starts here
/// (see [`shmproc_core::init`]).
///
/// A program that an MPI launcher started as one of several ranks, but
/// that was built without the `mpi` feature, is told so on stderr: each of
/// its ranks then runs as a program of its own.
pub fn init() {
    shmproc_core::init();
    if !cfg!(feature = "mpi")
        && let Some(n) = shmproc_mpi::launched_ranks()
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            eprintln!(
                "shm: launched as one of {n} MPI ranks, but built without the `mpi` feature: \
                 every rank runs as a program of its own (build with `--features shmproc/mpi`)"
            );
        });
    }
}

/// Beyond one machine: with the `mpi` feature, a `World`
/// of MPI ranks and queues that span nodes (see the crate `shmproc-mpi`).
pub mod mpi {
    pub use shmproc_mpi::*;
}
/// The manager: containers used in place in shared memory ([`Dict`],
/// [`List`], [`Namespace`]) and user types served by a manager process.
pub mod manager {
    pub use shmproc_manager::*;
}
/// Pools: [`Pool`] (processes) and `ThreadPool`, with Python's interface.
pub mod pool {
    pub use shmproc_pool::*;
}
pub use shmproc_sync::{
    AcquireTimeoutError, Array, Barrier, BarrierError, BoundedSemaphore, Condition, ConditionError, ConditionGuard,
    Event, Lock, LockGuard, OwnerDied, RLock, RLockGuard, Semaphore, SemaphoreGuard, SharedLock, SharedLockGuard,
    SyncError, TryAcquireError, Value,
};

/// The names the tour and the day-one programs use: `use shmproc::prelude::*;`.
pub mod prelude {
    pub use crate::plain;
    pub use shmproc_collections::pipe::{Connection, Pipe, PipeError};
    pub use shmproc_collections::queue::{JoinableQueue, Queue, SimpleQueue};
    pub use shmproc_collections::{bytes, duplex, mpmc, spsc};
    pub use shmproc_core::{
        Error, ErrorKind, Process, RawArray, RawValue, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
        ShmSafe, StartMethod, TryRecvError, TrySendError, Worker, active_children, cpu_count, current_process,
        get_context, parent_process,
    };
    pub use shmproc_manager::{Dict, Dynamic, List, Manager, ManagerError, Namespace, Proxy};
    pub use shmproc_pool::{AsyncResult, Pool, PoolApi, PoolError, TaskError, ThreadPool};
    pub use shmproc_sync::{
        AcquireTimeoutError, Array, Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, OwnerDied, RLock,
        Semaphore, TryAcquireError, Value,
    };
}

#[doc = include_str!("../docs/how-it-works.md")]
pub mod how_it_works {}

/// The README's code, compiled as a doctest so it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Plain data for shared values, arrays and rings: `#[shmproc::plain]` derives
/// what [`ShmSafe`] needs, so a program does not depend on zerocopy itself.
///
/// ```
/// #[shmproc::plain]
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Tick {
///     ts: u64,
///     px: f64,
/// }
///
/// let tick = shmproc::RawValue::new(Tick { ts: 1, px: 2.5 })?;
/// tick.set(Tick { ts: 2, px: 3.0 });
/// assert_eq!(tick.get(), Tick { ts: 2, px: 3.0 });
/// # Ok::<(), shmproc::SegmentError>(())
/// ```
///
/// A type the compiler cannot prove plain (a pointer field, padding, a
/// `bool` whose byte could hold 2) is refused at compile time:
///
/// ```compile_fail
/// #[shmproc::plain]
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Padded {
///     a: u8,
///     b: u64,
/// }
/// ```
pub use shmproc_macros::plain;

// Hidden: the path `#[shmproc::plain]` expands to (`shmproc::zerocopy::FromBytes`,
// ...); users name the attribute, not zerocopy.
#[doc(hidden)]
pub use zerocopy;
