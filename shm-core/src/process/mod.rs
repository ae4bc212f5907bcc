//! Processes with Python's semantics: `Process`, start methods, the current
//! and parent process, active children, and `init()`.
//!
//! ```no_run
//! fn square(n: u64) {
//!     println!("{n}^2 = {}", n * n);
//! }
//!
//! fn main() -> Result<(), shm_core::ProcessError> {
//!     shm_core::init(); // first: spawned children dispatch to their target here
//!     let p = shm_core::Process::new(square, 7);
//!     p.start()?;
//!     assert_eq!(p.join()?, 0);
//!     Ok(())
//! }
//! ```

mod bootstrap;
mod context;
mod current;
mod forkserver;
mod popen;
mod target;

use std::fmt;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::{
    Context, StartMethod, UnknownStartMethod, get_all_start_methods, get_context, get_start_method, set_start_method,
};
pub use current::{CurrentProcess, ParentProcess, active_children, current_process, parent_process};
pub use forkserver::server_pid as fork_server_pid;
pub use target::{ExitReport, FnRef};

use crate::error::{BootstrapError, ProcessError};
use crate::sync::shared::AtomicU8;
use crate::sync::shared::Ordering::{Acquire, Release};
use crate::{log, sys};
use current::ChildInfo;
use popen::{Outcome, Popen, Reaper};
use target::{ClosureJob, FnJob, Job};

/// Where `init` stands in this process: [`UNINIT`], [`RUNNING`] or [`DONE`].
///
/// Not a `std::sync::Once`: the fork server is forked while `init` runs, and
/// a `Once` copied in its running state blocks forever every later call in
/// the copy (the server and every child it forks). This word is set to
/// [`DONE`] by the server as it starts serving and by a spawned or
/// forkserver child once it took its bootstrap ([`init_done`]), so a child
/// calling `init()` again returns at once.
static INIT: AtomicU8 = AtomicU8::new(UNINIT);
const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// Marks `init` done in this process: a fork server (perhaps just forked
/// from a process inside `init`), or a child that took its bootstrap.
pub(crate) fn init_done() {
    // Release: pairs with the Acquire loads of `init` and `init_completed`.
    INIT.store(DONE, Release);
}

fn init_completed() -> bool {
    // Acquire: pairs with the Release store of `init_done`.
    INIT.load(Acquire) == DONE
}

/// Prepares shm in this program. Call it as the **first statement of
/// `main`**, like Python's `if __name__ == '__main__':` guard.
///
/// - In a child started by the spawn method (this executable run again),
///   it receives the target and its arguments, checks that it runs the same
///   executable as its parent, runs the target and exits: it never returns.
///   The same holds in a process started as the fork server.
/// - In any other process it starts the fork server (the default start
///   method) while the program is still single-threaded, and returns.
///
/// Calling it again does nothing, in any process: a child started by any
/// method (a library calling `init()` defensively) returns at once.
pub fn init() {
    if let Some(fd) = std::env::var_os(forkserver::SERVER_ENV) {
        // SAFETY: as for SPAWN_ENV below: a process exec'd as the fork server
        // runs `init` first in `main`, single-threaded. Removed so that the
        // server's children, which inherit its environment, do not take
        // themselves for a server when they call `init()`.
        unsafe {
            std::env::remove_var(forkserver::SERVER_ENV);
        }
        forkserver::serve_from_env(&fd.to_string_lossy());
    }
    if let Some(fd) = std::env::var_os(bootstrap::SPAWN_ENV) {
        // SAFETY: `init` is documented to run first in `main`, before the
        // program starts threads; in a spawned child no user code has run.
        // No other thread can be reading the environment.
        unsafe { std::env::remove_var(bootstrap::SPAWN_ENV) };
        let fd: i32 = fd.to_string_lossy().parse().unwrap_or(-1);
        // SAFETY: the parent placed our bootstrap socket at this descriptor
        // (spawn protocol); nothing else in this new process owns it.
        match unsafe { sys::adopt_fd(fd) } {
            Ok(sock) => bootstrap::run_child(sock, true),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "shm: spawned child has no bootstrap socket: {e}");
                sys::exit_now(1);
            }
        }
    }
    // Acquire on both outcomes: pairs with the Release store of `init_done`.
    match INIT.compare_exchange(UNINIT, RUNNING, Acquire, Acquire) {
        Ok(_) => {
            if sys::thread_count() == 1
                && let Err(e) = forkserver::start_by_fork()
            {
                tracing::warn!("fork server not started at init ({e}); it will be spawned on first use");
            }
            init_done();
        }
        Err(DONE) => {}
        Err(_) => {
            // Another thread of this process runs `init` (RUNNING is never
            // inherited: the only fork made under it marks its child done,
            // and a fork start needs a single thread). Its work is short: a
            // fork at most. Wait for it, as `Once` would.
            while !init_completed() {
                std::thread::yield_now();
            }
        }
    }
}

const MISSING_INIT: &str = "this process was started by the spawn method, but `main` did not call `shm::init()` \
                            first: add `shm::init();` as the first line of `main`";

/// A unit of work that runs in its own process, as a user type (the Rust
/// form of subclassing Python's `Process` and overriding `run`).
pub trait Worker: Serialize + DeserializeOwned + Send + 'static {
    /// What the child does.
    fn run(self);
}

fn run_worker<W: Worker>(w: W) {
    w.run();
}

struct State {
    name: String,
    daemon: bool,
    method: Option<StartMethod>,
    identity: Vec<u32>,
    /// The creating process's name, for the child's `parent_process()`.
    parent_name: String,
    job: Option<Box<dyn Job>>,
    creator: u32,
    outcome: Outcome,
    /// What a fork consumed, dropped with the handle rather than at once, so
    /// the parent writes as little as it can while its fresh child shares its
    /// pages copy-on-write (each first write to a shared page copies it).
    spent: Option<(Box<dyn Job>, ChildInfo)>,
}

struct Inner {
    state: Mutex<State>,
    /// The started child's pid; set once by `start`, read without a lock.
    pid: OnceLock<u32>,
    /// The started child's descriptors (pidfd, report socket); set by
    /// `start`, released as soon as its end is recorded (`join`), as
    /// Python's `join` releases everything. Waiters and signallers hold a
    /// clone while they use it.
    popen: Mutex<Option<Arc<Popen>>>,
    /// Set once the child's end is recorded (exit code, or status lost).
    ended: OnceLock<()>,
    /// Held by whoever waits on the child, so reports are read by one thread.
    waiting: Mutex<()>,
}

/// A child process, as Python's `multiprocessing.Process`.
///
/// Clones are handles to the same process.
#[derive(Clone)]
pub struct Process {
    inner: Arc<Inner>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state();
        f.debug_struct("Process")
            .field("name", &st.name)
            .field("pid", &self.inner.pid.get())
            .field("daemon", &st.daemon)
            .field("exitcode", &st.outcome.code)
            .finish()
    }
}

impl Process {
    /// A process that will run `target(args)`.
    ///
    /// The target is a function (or a non-capturing closure); the arguments
    /// travel with serde, and shared objects among them (values, arrays,
    /// locks, queues) are shared with the child, not copied. The default
    /// name is `Process-N`.
    pub fn new<A, R>(target: fn(A) -> R, args: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: ExitReport + 'static,
    {
        Self::with_job(Box::new(FnJob { target, args }), None)
    }

    /// A process that runs `worker.run()`.
    pub fn from_worker<W: Worker>(worker: W) -> Self {
        Self::new(run_worker::<W>, worker)
    }

    /// A process that runs a closure. Only the fork start method can run a
    /// closure (its captures cannot be sent to a new program), so this
    /// process uses fork, and like every fork start it fails with
    /// [`ProcessError::ForkWithThreads`] when this process runs more than one
    /// thread: start closures before starting threads (or join them first),
    /// or use [`Process::new`] with a fn and serde arguments.
    pub fn from_closure<F, R>(f: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: ExitReport + 'static,
    {
        Self::with_job(Box::new(ClosureJob(f)), Some(StartMethod::Fork))
    }

    fn with_job(job: Box<dyn Job>, method: Option<StartMethod>) -> Self {
        let (identity, name) = current::next_child_identity();
        let me = current::current_process();
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    name,
                    daemon: me.daemon(),
                    method,
                    identity,
                    parent_name: me.name().to_owned(),
                    job: Some(job),
                    creator: sys::getpid(),
                    outcome: Outcome::default(),
                    spent: None,
                }),
                pid: OnceLock::new(),
                popen: Mutex::new(None),
                ended: OnceLock::new(),
                waiting: Mutex::new(()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the name (builder form).
    #[must_use]
    pub fn with_name(self, name: impl Into<String>) -> Self {
        self.state().name = name.into();
        self
    }

    /// Sets the daemon flag (builder form). A daemonic process is killed
    /// when its parent exits, even by SIGKILL, and may not start children.
    #[must_use]
    pub fn with_daemon(self, daemon: bool) -> Self {
        self.state().daemon = daemon;
        self
    }

    /// Chooses the start method (builder form); the default is the
    /// process-wide one ([`get_start_method`]).
    #[must_use]
    pub fn with_start_method(self, method: StartMethod) -> Self {
        self.state().method = Some(method);
        self
    }

    /// Renames the process.
    pub fn set_name(&self, name: impl Into<String>) {
        self.state().name = name.into();
    }

    /// Sets the daemon flag.
    ///
    /// # Errors
    ///
    /// [`ProcessError::AlreadyRunning`] after `start`.
    pub fn set_daemon(&self, daemon: bool) -> Result<(), ProcessError> {
        let mut st = self.state();
        if self.inner.pid.get().is_some() {
            return Err(ProcessError::AlreadyRunning {
                what: "daemon",
                name: st.name.clone(),
            });
        }
        st.daemon = daemon;
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> String {
        self.state().name.clone()
    }

    /// Whether it is daemonic.
    pub fn daemon(&self) -> bool {
        self.state().daemon
    }

    /// Its pid, once started.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid.get().copied()
    }

    /// The start method it uses (or will use).
    pub fn start_method(&self) -> StartMethod {
        self.state().method.unwrap_or_else(get_start_method)
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// [`ProcessError::AlreadyStarted`], [`ProcessError::DaemonCannotHaveChildren`],
    /// [`ProcessError::ForkWithThreads`] when the method is fork and this
    /// process runs more than one thread (the process can be started later,
    /// once they are joined),
    /// [`ProcessError::ClosureNeedsFork`], [`ProcessError::NotInitialized`],
    /// [`ProcessError::Handle`] when the arguments do not serialise, and
    /// [`ProcessError::Io`].
    pub fn start(&self) -> Result<(), ProcessError> {
        if bootstrap::pending_spawn() {
            bootstrap::report_missing_init();
            return Err(ProcessError::NotInitialized(MISSING_INIT));
        }
        if current::is_daemon() {
            return Err(ProcessError::DaemonCannotHaveChildren);
        }
        current::reap_finished();
        let mut st = self.state();
        let Some(job) = st.job.take() else {
            return Err(ProcessError::AlreadyStarted { name: st.name.clone() });
        };
        let method = st.method.unwrap_or_else(get_start_method);
        if method == StartMethod::Fork
            && let Err(threads) = single_threaded()
        {
            st.job = Some(job);
            return Err(ProcessError::ForkWithThreads {
                name: st.name.clone(),
                threads,
            });
        }
        st.method = Some(method);
        // Built from what `new` prepared: start writes as few pages as it can
        // (every page written after a fork is copied once more).
        let info = ChildInfo {
            name: st.name.clone(),
            identity: std::mem::take(&mut st.identity),
            daemon: st.daemon,
            parent_pid: st.creator,
            // 0 (unknown) in the rare case of a handle started by a process
            // other than its creator (a fork child of it).
            parent_start: if st.creator == sys::cached_pid() {
                crate::liveness::own_start_time()
            } else {
                0
            },
            parent_name: std::mem::take(&mut st.parent_name),
            parent_main_thread: sys::is_main_thread(),
            method,
            log_level: log::level_code(),
        };
        install_panic_hook();
        // Registered before the child exists: nothing to write after a fork.
        current::register_child(self);
        let started = match method {
            StartMethod::Fork => {
                let mut slot = Some((job, info));
                let r = start_fork(&mut slot);
                if r.is_err() {
                    if let Some((job, info)) = slot {
                        st.job = Some(job);
                        st.identity = info.identity;
                        st.parent_name = info.parent_name;
                    }
                } else {
                    st.spent = slot;
                }
                r
            }
            StartMethod::Spawn | StartMethod::ForkServer => {
                let r = if method == StartMethod::Spawn {
                    start_spawn(job.as_ref(), &info)
                } else {
                    start_forkserver(job.as_ref(), &info)
                };
                if r.is_err() {
                    st.job = Some(job);
                    st.identity = info.identity;
                    st.parent_name = info.parent_name;
                }
                r
            }
        };
        let (popen, early) = match started {
            Ok(s) => s,
            Err(e) => {
                drop(st);
                current::unregister_child(self);
                return Err(e);
            }
        };
        tracing::debug!(child = %st.name, pid = popen.pid, method = %method, "started child");
        st.outcome = early;
        let pid = popen.pid;
        *self.popen_slot() = Some(Arc::new(popen));
        let _ = self.inner.pid.set(pid);
        Ok(())
    }

    /// Waits for the child to end and returns its exit code: 0 when the
    /// target returned, `n` for `std::process::exit(n)`, 1 after a panic or
    /// an `Err` return, minus the signal number when a signal killed it.
    ///
    /// # Errors
    ///
    /// [`ProcessError::NotStarted`], [`ProcessError::JoinSelf`],
    /// [`ProcessError::NotOurChild`]; [`ProcessError::Bootstrap`] when the
    /// child could not run its target (the exit code is still recorded);
    /// [`ProcessError::StatusLost`] if the fork server was killed first.
    pub fn join(&self) -> Result<i32, ProcessError> {
        loop {
            // An unbounded wait returns only once the child ended; loop in
            // case a report arrives without the exit.
            if let Some(code) = self.wait(None)? {
                return Ok(code);
            }
        }
    }

    /// As [`Process::join`], giving up after `timeout` with `Ok(None)`.
    ///
    /// # Errors
    ///
    /// As [`Process::join`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        self.wait(Some(timeout))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<Option<i32>, ProcessError> {
        let popen = {
            let st = self.state();
            let Some(&pid) = self.inner.pid.get() else {
                return Err(ProcessError::NotStarted { name: st.name.clone() });
            };
            let me = sys::getpid();
            if pid == me {
                return Err(ProcessError::JoinSelf);
            }
            if st.creator != me {
                return Err(ProcessError::NotOurChild {
                    name: st.name.clone(),
                    parent: st.creator,
                    me,
                });
            }
            if st.outcome.code.is_some() || st.outcome.status_lost {
                return finish(&st);
            }
            match self.popen() {
                Some(popen) => popen,
                // Released: the end is recorded.
                None => return finish(&st),
            }
        };
        let _waiting = self
            .inner
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let st = self.state();
            if st.outcome.code.is_some() || st.outcome.status_lost {
                return finish(&st);
            }
        }
        let mut out = Outcome::default();
        popen.wait(timeout, &mut out)?;
        let mut st = self.state();
        st.outcome.started |= out.started;
        if out.failure.is_some() {
            st.outcome.failure = out.failure;
        }
        st.outcome.status_lost |= out.status_lost;
        if st.outcome.status_lost {
            let _ = self.inner.ended.set(());
        }
        if let Some(code) = out.code {
            st.outcome.code = Some(code);
            let _ = self.inner.ended.set(());
            let spawned = popen.conn.is_some() && popen.reaper == Reaper::Us;
            if spawned && !st.outcome.started && st.outcome.failure.is_none() && code >= 0 {
                st.outcome.failure = Some(BootstrapError::MissingInit);
            }
            tracing::debug!(child = %st.name, code, "child exited with exit code {code}");
        }
        let result = finish(&st);
        if st.outcome.code.is_some() || st.outcome.status_lost {
            // What a fork kept to spare copy-on-write copies: the child is gone.
            let spent = st.spent.take();
            drop(st);
            drop(spent);
            self.release();
        }
        result
    }

    /// The started child's descriptors, unless released.
    fn popen(&self) -> Option<Arc<Popen>> {
        self.popen_slot().clone()
    }

    fn popen_slot(&self) -> MutexGuard<'_, Option<Arc<Popen>>> {
        self.inner
            .popen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Once the end is recorded: closes the child's descriptors (when the
    /// last user of them returns) and forgets it in the registry of
    /// children, which needs it no more.
    fn release(&self) {
        let popen = self.popen_slot().take();
        drop(popen);
        current::unregister_child(self);
    }

    /// Whether `start` is under way (registered, no pid yet).
    fn is_starting(&self) -> bool {
        self.inner.pid.get().is_none() && self.state().job.is_none()
    }

    /// Whether the child's end has been recorded (no lock taken).
    pub(crate) fn has_ended(&self) -> bool {
        self.inner.ended.get().is_some()
    }

    /// Whether the registry of children holds the only handle.
    pub(crate) fn only_in_registry(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }

    /// Whether two handles are the same process.
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether the child is running (started and not yet ended).
    pub fn is_alive(&self) -> bool {
        // None before start and once the end is recorded.
        let Some(popen) = self.popen() else {
            return false;
        };
        {
            let st = self.state();
            if st.outcome.code.is_some() || st.outcome.status_lost {
                return false;
            }
        }
        if !sys::poll_readable(&[popen.pidfd.as_fd()], Some(Duration::ZERO)).is_ok_and(|r| r[0]) {
            return true;
        }
        // It has ended: collect its status (the fork server reports at once).
        let timeout = match popen.reaper {
            Reaper::Us => Some(Duration::ZERO),
            Reaper::Server => None,
        };
        drop(popen);
        let _ = self.wait(timeout);
        false
    }

    /// The exit code, or `None` while the child runs (or before start).
    pub fn exitcode(&self) -> Option<i32> {
        if self.inner.pid.get().is_some() {
            let _ = self.is_alive();
        }
        self.state().outcome.code
    }

    /// Sends SIGTERM (Python's `terminate`). Does nothing once the child ended.
    ///
    /// # Errors
    ///
    /// [`ProcessError::NotStarted`], [`ProcessError::NotOurChild`], [`ProcessError::Io`].
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(sys::SIGTERM)
    }

    /// Sends SIGKILL. Does nothing once the child ended.
    ///
    /// # Errors
    ///
    /// As [`Process::terminate`].
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(sys::SIGKILL)
    }

    fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        let st = self.state();
        if self.inner.pid.get().is_none() {
            return Err(ProcessError::NotStarted { name: st.name.clone() });
        }
        if st.creator != sys::getpid() {
            return Err(ProcessError::NotOurChild {
                name: st.name.clone(),
                parent: st.creator,
                me: sys::getpid(),
            });
        }
        if st.outcome.code.is_some() {
            return Ok(());
        }
        // None once the end is recorded and the descriptors released.
        match self.popen() {
            Some(popen) => popen.signal(sig),
            None => Ok(()),
        }
    }
}

fn finish(st: &State) -> Result<Option<i32>, ProcessError> {
    if let Some(e) = &st.outcome.failure {
        return Err(ProcessError::Bootstrap {
            name: st.name.clone(),
            source: e.clone(),
        });
    }
    if st.outcome.status_lost {
        return Err(ProcessError::StatusLost {
            name: st.name.clone(),
            why: "the fork server died before the child; it was not our child to reap",
        });
    }
    Ok(st.outcome.code)
}

type Started = Result<(Popen, Outcome), ProcessError>;

/// How long [`single_threaded`] waits for threads that are ending: a thread
/// that returned from its function (or was joined) may stay listed in
/// `/proc/self/task` for a moment while the kernel tears it down.
const THREAD_EXIT_GRACE: Duration = Duration::from_millis(20);

/// Whether this process runs one thread, so that a fork child may run any
/// code; otherwise the number of threads counted. Threads still listed are
/// counted again for up to [`THREAD_EXIT_GRACE`], since one that just ended
/// lingers in `/proc` a moment.
fn single_threaded() -> Result<(), usize> {
    if sys::thread_count() <= 1 {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + THREAD_EXIT_GRACE;
    loop {
        std::thread::sleep(Duration::from_millis(1));
        let threads = sys::thread_count();
        if threads <= 1 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(threads);
        }
    }
}

/// Flushes stdout (stderr is unbuffered), so a fork child does not write
/// the parent's pending output a second time.
fn flush_std() {
    let _ = std::io::stdout().flush();
}

/// Forks a child that runs the job in `slot`. In the parent the job stays in
/// `slot`.
/// Forks a child that runs the job in `slot` as the process `info` names.
/// In the parent both stay in `slot`, to be dropped later.
fn start_fork(slot: &mut Option<(Box<dyn Job>, ChildInfo)>) -> Started {
    let start = ChildStart::of(&slot.as_ref().expect("the job is in its slot").1);
    // Output buffered now would otherwise be written twice.
    flush_std();
    // SAFETY: fork's rule (only async-signal-safe code in the child of a
    // multi-threaded parent) does not apply: `start` checked just before
    // that this process runs a single thread (`single_threaded`), and a
    // thread can only be started by this very thread, which is here.
    match unsafe { sys::fork() }.map_err(ProcessError::io("fork"))? {
        sys::Forked::Child => {
            let (job, info) = slot.take().expect("the job is in its slot");
            current::become_child(info);
            child_main(start, move || job.run())
        }
        sys::Forked::Parent(pid) => {
            let pidfd = sys::pidfd_open(pid).map_err(ProcessError::io("pidfd_open"))?;
            let popen = Popen {
                pid,
                pidfd,
                conn: None,
                reaper: Reaper::Us,
            };
            Ok((popen, Outcome::default()))
        }
    }
}

fn start_spawn(job: &dyn Job, info: &ChildInfo) -> Started {
    let encoded = job.encode()?;
    let (ours, theirs) = sys::seqpacket_pair().map_err(ProcessError::io("socketpair"))?;
    // Queued in the socket before the child exists; it reads it in init().
    bootstrap::send(ours.as_fd(), info, &encoded)?;
    let env = bootstrap::child_env(&[(bootstrap::SPAWN_ENV, "3".into())]);
    let argv: Vec<_> = std::env::args_os().collect();
    let pid = sys::spawn_self(&argv, &env, theirs.as_fd()).map_err(ProcessError::io("posix_spawn"))?;
    drop(theirs);
    let pidfd = sys::pidfd_open(pid).map_err(ProcessError::io("pidfd_open"))?;
    let popen = Popen {
        pid,
        pidfd,
        conn: Some(ours),
        reaper: Reaper::Us,
    };
    Ok((popen, Outcome::default()))
}

fn start_forkserver(job: &dyn Job, info: &ChildInfo) -> Started {
    if !init_completed() && !forkserver::is_running() && !bootstrap::bootstrapped() {
        return Err(ProcessError::NotInitialized(
            "the forkserver start method needs `shm::init();` as the first line of `main` \
             (or choose the fork start method)",
        ));
    }
    let encoded = job.encode()?;
    let (ours, theirs) = sys::seqpacket_pair().map_err(ProcessError::io("socketpair"))?;
    bootstrap::send(ours.as_fd(), info, &encoded)?;
    forkserver::request(&ours, theirs, info.daemon)
}

/// What a child needs to know to start, once its `ChildInfo` is given away.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChildStart {
    method: StartMethod,
    daemon: bool,
    parent_pid: u32,
    parent_main_thread: bool,
}

impl ChildStart {
    pub(crate) fn of(info: &ChildInfo) -> Self {
        Self {
            method: info.method,
            daemon: info.daemon,
            parent_pid: info.parent_pid,
            parent_main_thread: info.parent_main_thread,
        }
    }
}

/// Installs, once per program, a panic hook that names the child process
/// that panicked (`Process Process-3 (pid 42) panicked at ...`) and leaves
/// the main process's panics to the hook that was there before. Installed
/// in the parent, so a fork child writes nothing to install it.
pub(crate) fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |panic| {
            if current::is_child() {
                let me = current_process();
                let _ = writeln!(std::io::stderr(), "Process {} (pid {}) {panic}", me.name(), me.pid());
            } else {
                previous(panic);
            }
        }));
    });
}

/// The life of a child once it knows who it is: runs `run`, then exits.
fn child_main(start: ChildStart, run: impl FnOnce() -> i32) -> ! {
    if start.daemon && start.method != StartMethod::ForkServer {
        die_with_parent(start.parent_pid, start.parent_main_thread);
    }
    tracing::debug!(method = %start.method, parent = start.parent_pid, "child process started");
    let code = run();
    exit_child(code)
}

/// Ends a child: joins its own children, logs, flushes, `_exit`s.
fn exit_child(code: i32) -> ! {
    current::cleanup_children();
    tracing::debug!(code, "process exiting with exit code {code}");
    // Stderr is unbuffered: only stdout may hold output.
    let _ = std::io::stdout().flush();
    sys::exit_now(code)
}

/// Makes a daemonic child die with its parent process.
fn die_with_parent(parent: u32, parent_main_thread: bool) {
    if parent_main_thread {
        // The kernel signals us when the thread that forked us exits; for
        // the main thread that is the process. Close the race with a parent
        // that died before the call.
        if sys::kill_me_with_parent().is_ok() && sys::getppid() == parent {
            return;
        }
        if sys::getppid() != parent {
            sys::exit_now(1);
        }
    }
    // Started from another thread (or prctl failed): watch the parent process.
    match sys::pidfd_open(parent) {
        Ok(pidfd) => {
            let _ = std::thread::Builder::new()
                .name("shm-parent-watch".into())
                .spawn(move || {
                    let _ = sys::poll_readable(&[pidfd.as_fd()], None);
                    sys::kill_pid(sys::getpid(), sys::SIGKILL);
                });
        }
        Err(_) => sys::exit_now(1),
    }
}
