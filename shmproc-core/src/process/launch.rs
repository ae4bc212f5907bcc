//! Starting a child by fork, spawn or the fork server, and the life of a
//! child once started (panic hook, exit, death with its parent).

use std::io::Write as _;
use std::os::fd::AsFd;
use std::sync::Once;
use std::time::Duration;

use super::context::StartMethod;
use super::current::ChildInfo;
use super::current::current_process;
use super::popen::{Outcome, Popen, Reaper};
use super::target::Job;
use super::{bootstrap, current, forkserver, init_completed};
use crate::error::ProcessError;
use crate::sys;

/// The child's process handle and what its reaper will learn, or why it
/// did not start.
pub(super) type Started = Result<(Popen, Outcome), ProcessError>;

/// How long [`single_threaded`] waits for threads that are ending: a thread
/// that returned from its function (or was joined) may stay listed in
/// `/proc/self/task` for a moment while the kernel tears it down.
const THREAD_EXIT_GRACE: Duration = Duration::from_millis(20);

/// Whether this process runs one thread, so that a fork child may run any
/// code; otherwise the number of threads counted. Threads still listed are
/// counted again for up to [`THREAD_EXIT_GRACE`], since one that just ended
/// lingers in `/proc` a moment.
pub(super) fn single_threaded() -> Result<(), usize> {
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
pub(super) fn start_fork(slot: &mut Option<(Box<dyn Job>, ChildInfo)>) -> Started {
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

pub(super) fn start_spawn(job: &dyn Job, info: &ChildInfo) -> Started {
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

pub(super) fn start_forkserver(job: &dyn Job, info: &ChildInfo) -> Started {
    if !init_completed() && !forkserver::is_running() && !bootstrap::bootstrapped() {
        return Err(ProcessError::NotInitialized(
            "the forkserver start method needs `shmproc::init();` as the first line of `main` \
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
pub(super) struct ChildStart {
    pub(super) method: StartMethod,
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
pub(super) fn install_panic_hook() {
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
pub(super) fn child_main(start: ChildStart, run: impl FnOnce() -> i32) -> ! {
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
