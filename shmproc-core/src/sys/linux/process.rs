//! Processes and threads: ids, `/proc` reads, fork, spawn, pidfd, signals.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

/// This process's id.
pub fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get().unsigned_abs()
}

/// The id of this process's parent as the kernel sees it.
pub fn getppid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get().unsigned_abs())
}

/// Whether the calling thread is the process's first thread.
pub fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// Number of threads in this process.
///
/// One `stat`: procfs gives `/proc/self/task` a link count of 2 plus the
/// number of threads (`proc_task_getattr`), which costs a third of listing
/// the directory; the listing is the fallback. Checked before every fork
/// start, so its cost shows in the fork row of the benchmarks.
pub fn thread_count() -> usize {
    match rustix::fs::stat(c"/proc/self/task").map(|st| st.st_nlink) {
        Ok(links) if links > 2 => usize::try_from(links - 2).unwrap_or(usize::MAX),
        _ => std::fs::read_dir("/proc/self/task").map_or(1, Iterator::count),
    }
}

/// What `/proc/<id>/stat` says about a task (a process or a thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStat {
    /// No task has this id.
    Gone,
    /// It has ended (a zombie, or dead and not yet gone).
    Ended,
    /// It runs. `start` is its start time in clock ticks since boot (field
    /// 22), `None` when the file exists but cannot be read or parsed (hidepid).
    Running {
        /// Start time, ticks since boot.
        start: Option<u64>,
    },
}

/// Reads the state and start time of task `id` from `/proc/<id>/stat` (one
/// read; the only place that parses it).
pub fn task_stat(id: u32) -> TaskStat {
    let stat = match std::fs::read(format!("/proc/{id}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return TaskStat::Gone,
        Err(_) => return TaskStat::Running { start: None },
    };
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return TaskStat::Running { start: None };
    };
    let rest = &stat[close + 1..];
    let mut fields = rest.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty());
    match fields.next() {
        Some([b'Z' | b'X' | b'x']) => TaskStat::Ended,
        Some(_) => TaskStat::Running {
            // Field 3 was the state; the start time is field 22, 19 further.
            start: fields
                .nth(18)
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|f| f.parse().ok()),
        },
        None => TaskStat::Running { start: None },
    }
}

/// Number of CPUs this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Identity of the running executable: device and inode of `/proc/self/exe`.
pub fn exe_identity() -> io::Result<(u64, u64)> {
    let st = rustix::fs::stat("/proc/self/exe")?;
    Ok((st.st_dev, st.st_ino))
}

unsafe extern "C" {
    // Defined by both GNU ld and lld for every ELF executable.
    static __ehdr_start: u8;
    static etext: u8;
}

/// Start of this executable's image and end of its code, as addresses.
///
/// Code addresses relative to the start are the same in every process that
/// runs the same executable file, whatever address the loader chose.
pub fn code_range() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken; nothing is read.
    let start = (&raw const __ehdr_start).addr();
    let end = (&raw const etext).addr();
    (start, end)
}

/// Result of [`fork`].
#[derive(Debug)]
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(u32),
    /// In the child.
    Child,
}

/// Forks the process.
///
/// # Safety
///
/// In the child, only the calling thread exists. If the parent had other
/// threads, the child may only call async-signal-safe functions until it
/// execs or exits: a lock another thread held is held forever.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller accepts fork's rules above; fork itself has no
    // memory-safety preconditions.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid.unsigned_abs())),
    }
}

/// Ends the process at once with `code`: no destructors, no `atexit` handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Asks the kernel to SIGKILL this process when the thread that created it exits.
pub fn kill_me_with_parent() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?)
}

/// Opens a pidfd for `pid` (close-on-exec).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let raw = i32::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Sends signal `sig` through a pidfd (immune to pid reuse).
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let sig = Signal::from_named_raw(sig).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        // The process already exited: nothing to signal.
        Err(rustix::io::Errno::SRCH) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends `sig` to every process whose pid is given (best effort).
pub fn kill_pid(pid: u32, sig: i32) {
    if let (Ok(raw), Some(sig)) = (i32::try_from(pid), Signal::from_named_raw(sig))
        && let Some(pid) = Pid::from_raw(raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// `SIGTERM`: the signal of `terminate()`.
pub const SIGTERM: i32 = libc::SIGTERM;
/// `SIGKILL`: the signal of `kill()`.
pub const SIGKILL: i32 = libc::SIGKILL;

/// Whether an I/O error means the peer of a socket is gone.
pub fn is_peer_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET))
}

/// Runs `f` when the process exits through `exit` (returning from `main`
/// included), as C's `atexit`.
pub fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function valid for the whole program; the
    // caller makes it non-unwinding.
    unsafe { libc::atexit(f) };
}

/// Makes this process ignore Ctrl-C (`SIGINT`), or restores the default.
pub fn ignore_interrupt(ignore: bool) {
    let action = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: SIG_IGN and SIG_DFL install no handler code.
    unsafe { libc::signal(libc::SIGINT, action) };
}

/// Names the calling thread (what `ps` and `top` show).
pub fn set_thread_name(name: &CStr) {
    let _ = rustix::thread::set_name(name);
}

/// RAM plus swap of this machine, in bytes.
pub fn memory_size() -> u64 {
    let info = rustix::system::sysinfo();
    let unit = u64::from(info.mem_unit.max(1));
    info.totalram.saturating_add(info.totalswap).saturating_mul(unit)
}

/// Python's encoding of how a process ended: its exit status, or minus the
/// number of the signal that killed it.
fn exit_code_of(status: &rustix::process::WaitIdStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(sig) = status.terminating_signal() {
        -sig
    } else {
        0
    }
}

/// Reaps the child behind `pidfd` if it has ended (or waits for it when
/// `block`). Returns its exit code.
pub fn wait_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<i32>> {
    let mut opts = WaitIdOptions::EXITED;
    if !block {
        opts |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Ok(Some(status)) => return Ok(Some(exit_code_of(&status))),
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reaps child `pid` if it has ended, without blocking. Returns its exit code.
pub fn try_reap_pid(pid: u32) -> io::Result<Option<i32>> {
    let raw = i32::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ECHILD))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))?;
    match rustix::process::waitid(WaitId::Pid(pid), WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {
        Ok(s) => Ok(s.map(|s| exit_code_of(&s))),
        Err(e) => Err(e.into()),
    }
}

/// Starts a new process running `/proc/self/exe` (this very executable file,
/// even if its path was replaced since) with `argv` and `env`, and with `fd`
/// placed at descriptor 3. Uses `posix_spawn` (a vfork-style clone, cheap
/// even for a large parent, and safe in a multi-threaded one).
pub fn spawn_self(argv: &[OsString], env: &[(OsString, OsString)], fd: BorrowedFd<'_>) -> io::Result<u32> {
    const CHILD_FD: RawFd = 3;
    // posix_spawn's dup2 onto the same number would keep close-on-exec set:
    // move the descriptor out of the way first.
    let high = rustix::io::fcntl_dupfd_cloexec(fd, 10)?;
    let to_c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let argv_c: Vec<CString> = argv.iter().map(|a| to_c(a.as_bytes())).collect::<io::Result<_>>()?;
    let env_c: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            to_c(&kv)
        })
        .collect::<io::Result<_>>()?;
    let mut argv_p: Vec<*mut libc::c_char> = argv_c.iter().map(|c| c.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut env_p: Vec<*mut libc::c_char> = env_c.iter().map(|c| c.as_ptr().cast_mut()).collect();
    env_p.push(std::ptr::null_mut());

    let mut actions = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    // SAFETY: `actions` is valid storage for the object being initialised.
    check_spawn(unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) })?;
    let result = (|| {
        // SAFETY: `actions` was initialised above; `high` is an open descriptor.
        check_spawn(unsafe {
            libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), high.as_raw_fd(), CHILD_FD)
        })?;
        let devnull = c"/dev/null";
        // SAFETY: as above; the path is a valid C string that outlives the call.
        check_spawn(unsafe {
            libc::posix_spawn_file_actions_addopen(actions.as_mut_ptr(), 0, devnull.as_ptr(), libc::O_RDONLY, 0)
        })?;
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer is valid and NUL-terminated for the duration of
        // the call: the path literal, the initialised actions, and both
        // null-terminated pointer arrays whose strings live in `argv_c`/`env_c`.
        check_spawn(unsafe {
            libc::posix_spawn(
                &raw mut pid,
                c"/proc/self/exe".as_ptr(),
                actions.as_ptr(),
                std::ptr::null(),
                argv_p.as_ptr(),
                env_p.as_ptr(),
            )
        })?;
        Ok(pid.unsigned_abs())
    })();
    // SAFETY: `actions` was initialised and is destroyed exactly once.
    unsafe { libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr()) };
    result
}

fn check_spawn(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Takes ownership of descriptor `fd` if it is open.
///
/// # Safety
///
/// Nothing else in the process may own `fd`.
pub unsafe fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is a plain integer here; F_GETFD only asks whether it is open.
    let fd_borrow = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(fd_borrow)?;
    rustix::io::fcntl_setfd(fd_borrow, rustix::io::FdFlags::CLOEXEC)?;
    // SAFETY: the descriptor is open (checked above) and the caller guarantees
    // nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

mod ids {
    use std::cell::Cell;

    #[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    #[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
    pub static PID: AtomicU32 = AtomicU32::new(0);

    thread_local! {
        pub static TID: Cell<u32> = const { Cell::new(0) };
    }

    /// Runs in the child of every fork (registered with `pthread_atfork`):
    /// the cached ids belong to the parent.
    pub extern "C" fn forget_ids() {
        // Relaxed: the child has one thread at this point.
        PID.store(0, Relaxed);
        super::super::futex::forget_membarrier_after_fork();
        TID.with(|t| t.set(0));
    }
}

pub(super) fn register_fork_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `forget_ids` is a plain function that never unwinds and
        // stays valid for the life of the program.
        unsafe { libc::pthread_atfork(None, None, Some(ids::forget_ids)) };
    });
}

/// This process's id, cached (the cache is dropped in fork children).
#[inline]
pub fn cached_pid() -> u32 {
    // Relaxed: the value is the same for every thread of the process.
    let pid = ids::PID.load(core::sync::atomic::Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    register_fork_hook();
    let pid = getpid();
    ids::PID.store(pid, core::sync::atomic::Ordering::Relaxed);
    pid
}

/// The calling thread's id, cached per thread (dropped in fork children).
#[inline]
pub fn cached_tid() -> u32 {
    let tid = ids::TID.with(std::cell::Cell::get);
    if tid != 0 {
        return tid;
    }
    register_fork_hook();
    let tid = rustix::thread::gettid().as_raw_nonzero().get().unsigned_abs();
    ids::TID.with(|t| t.set(tid));
    tid
}

/// This process's children that still run (zombies left out), read from
/// `/proc/self/task/*/children`; `None` when that cannot be read.
pub fn live_children() -> Option<Vec<u32>> {
    let mut live = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).ok()?;
        live.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|&p| matches!(task_stat(p), TaskStat::Running { .. })),
        );
    }
    Some(live)
}
