//! Who this process is (name, identity, daemon flag, parent) and which
//! children it has started.

use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Process, StartMethod};
use crate::error::ProcessError;
use crate::liveness::{self, Started};
use crate::sys;

/// What a child learns about itself from its parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ChildInfo {
    pub name: String,
    pub identity: Vec<u32>,
    pub daemon: bool,
    pub parent_pid: u32,
    /// The parent's start time (0: unknown), so that a reused pid does not
    /// pass for it.
    pub parent_start: u64,
    pub parent_name: String,
    /// Whether the parent started the child from its main thread (so the
    /// kernel's parent-death signal follows the parent process).
    pub parent_main_thread: bool,
    pub method: StartMethod,
    pub log_level: Option<u8>,
}

struct Me {
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    parent: Option<(u32, u64, String)>,
    counter: u32,
}

/// This process's identity and children, in one small aligned static so
/// they share one page: a fork child that writes both copies one page.
#[repr(C, align(256))]
struct Registry {
    me: Mutex<Me>,
    children: Mutex<Vec<Process>>,
}

const _: () = assert!(size_of::<Registry>() <= 256);

static REGISTRY: Registry = Registry {
    me: Mutex::new(Me {
        name: String::new(),
        identity: Vec::new(),
        daemon: false,
        parent: None,
        counter: 0,
    }),
    children: Mutex::new(Vec::new()),
};

fn me() -> MutexGuard<'static, Me> {
    REGISTRY.me.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn children() -> MutexGuard<'static, Vec<Process>> {
    REGISTRY
        .children
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The identity and default name of the next child (`Process-N`, nested
/// `Process-N:M`), as Python numbers them.
pub(crate) fn next_child_identity() -> (Vec<u32>, String) {
    let mut me = me();
    me.counter += 1;
    let mut identity = me.identity.clone();
    identity.push(me.counter);
    let name = format!(
        "Process-{}",
        identity.iter().map(u32::to_string).collect::<Vec<_>>().join(":")
    );
    (identity, name)
}

/// Makes this freshly started child process take on `info`.
///
/// Moves, never allocates: in a fork child every heap write copies a page
/// shared with the parent.
pub(crate) fn become_child(info: ChildInfo) {
    {
        let mut me = me();
        me.name = info.name;
        me.identity = info.identity;
        me.daemon = info.daemon;
        me.parent = Some((info.parent_pid, info.parent_start, info.parent_name));
        me.counter = 0;
    }
    // Children of the parent are not ours (a fork copied the list). Forget
    // them without running their destructors: they belong to the parent.
    std::mem::forget(std::mem::take(&mut *children()));
}

/// Whether this process was started by shm (it has a parent name).
pub(crate) fn is_child() -> bool {
    me().parent.is_some()
}

/// Whether this process is daemonic.
pub(crate) fn is_daemon() -> bool {
    me().daemon
}

/// The process running this code, as Python's `current_process()` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    daemon: bool,
    identity: Vec<u32>,
}

impl CurrentProcess {
    /// Its name: `MainProcess`, or the name its parent gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it is daemonic.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Its position in the process tree: empty for the main process, `[2, 1]`
    /// for `Process-2:1`.
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }

    /// A process cannot join itself: always [`ProcessError::JoinSelf`], as
    /// Python's `current_process().join()` fails.
    pub fn join(&self) -> Result<i32, ProcessError> {
        Err(ProcessError::JoinSelf)
    }
}

/// Describes the calling process.
pub fn current_process() -> CurrentProcess {
    let me = me();
    CurrentProcess {
        name: if me.name.is_empty() {
            "MainProcess".to_owned()
        } else {
            me.name.clone()
        },
        pid: sys::getpid(),
        daemon: me.daemon,
        identity: me.identity.clone(),
    }
}

/// The process that started this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentProcess {
    pid: u32,
    start: u64,
    name: String,
}

impl ParentProcess {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is still running.
    pub fn is_alive(&self) -> bool {
        liveness::is_alive(self.pid, Started::at_or_any(self.start))
    }

    /// Waits until it ends (Python's `parent_process().join()`).
    ///
    /// Returns at once if it has ended (or the pid now names another
    /// process: the start time is checked).
    pub fn join(&self) {
        self.wait(None);
    }

    /// Waits at most `timeout` for it to end; whether it ended.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.wait(Some(timeout))
    }

    fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // A pidfd names the process, not the number. Opened before the
        // liveness check: if that check finds our parent, the pidfd is
        // its, and no later reuse of the pid can fool the wait.
        let pidfd = sys::pidfd_open(self.pid);
        if !self.is_alive() {
            return true;
        }
        if let Ok(fd) = pidfd {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // A pidfd polls readable once its process has ended.
            if let Ok(ready) = sys::poll_readable(&[fd.as_fd()], left) {
                return ready.first().copied().unwrap_or(false) || !self.is_alive();
            }
        }
        // No pidfd (an old kernel, a sandbox): look every liveness slice.
        loop {
            if !self.is_alive() {
                return true;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return false;
            }
            std::thread::sleep(left.map_or(crate::LIVENESS_SLICE, |l| l.min(crate::LIVENESS_SLICE)));
        }
    }
}

/// The parent of this process, or `None` in the main process.
pub fn parent_process() -> Option<ParentProcess> {
    me().parent.as_ref().map(|(pid, start, name)| ParentProcess {
        pid: *pid,
        start: *start,
        name: name.clone(),
    })
}

/// Registers a started child so it is reaped even if its handle is dropped,
/// and so that it is joined (or, if daemonic, terminated) at exit.
pub(crate) fn register_child(p: &Process) {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // `at_exit` never unwinds: it catches panics.
        sys::at_exit(at_exit);
    });
    children().push(p.clone());
}

/// Forgets a child whose start failed, or whose end is recorded.
pub(crate) fn unregister_child(p: &Process) {
    children().retain(|c| !c.same(p));
}

/// Forgets children that have ended, reaping those whose handles were
/// dropped. Allocates nothing in the common case (a `start` right after a
/// `join`): ended children are known without a lock, and only children
/// that nobody else holds are polled.
pub(crate) fn reap_finished() {
    let orphans: Vec<Process> = {
        let mut list = children();
        list.retain(|p| !p.has_ended());
        if list.iter().all(|p| !p.only_in_registry()) {
            return;
        }
        list.iter().filter(|p| p.only_in_registry()).cloned().collect()
    };
    // Polled without the registry lock (polling takes each child's lock).
    let ended: Vec<Process> = orphans
        .into_iter()
        .filter(|p| !p.is_starting() && !p.is_alive())
        .collect();
    if !ended.is_empty() {
        children().retain(|p| !ended.iter().any(|e| e.same(p)));
    }
}

/// The children of this process that are still running; reaps those that ended.
pub fn active_children() -> Vec<Process> {
    let all: Vec<Process> = children().clone();
    // Polling reaps the children that ended, and marks them so.
    let alive: Vec<Process> = all.into_iter().filter(|p| !p.is_starting() && p.is_alive()).collect();
    children().retain(|p| !p.has_ended());
    alive
}

/// Python's exit handler: terminate daemonic children, then join all.
pub(crate) fn cleanup_children() {
    let Ok(list) = REGISTRY.children.try_lock().map(|mut l| std::mem::take(&mut *l)) else {
        return;
    };
    for p in &list {
        if p.daemon() && p.is_alive() {
            let _ = p.terminate();
        }
    }
    for p in &list {
        let _ = p.join();
    }
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(cleanup_children);
}
