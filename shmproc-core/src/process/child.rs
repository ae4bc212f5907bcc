//! [`Process`]: a child process, from creation through start to join.

use std::fmt;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{StartMethod, get_start_method};
use super::current::ChildInfo;
use super::launch::{install_panic_hook, single_threaded, start_fork, start_forkserver, start_spawn};
use super::popen::{Outcome, Popen, Reaper};
use super::target::ExitReport;
use super::target::{ClosureJob, FnJob, Job};
use super::{MISSING_INIT, Worker, bootstrap, current, run_worker};
use crate::error::{BootstrapError, ProcessError};
use crate::{log, sys};

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
    /// A duplicate of the child's pidfd (readable once it ended), for a
    /// caller that waits on several children at once with `poll` (a pool's
    /// watcher). `None` before start. Not public API.
    #[doc(hidden)]
    pub fn pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        self.popen().and_then(|p| p.pidfd.try_clone().ok())
    }

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
    pub(super) fn is_starting(&self) -> bool {
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
    pub(super) fn same(&self, other: &Self) -> bool {
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
