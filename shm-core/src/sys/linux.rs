//! Linux system calls: memfd, mmap, POSIX shm, pidfd, fork/spawn, `SCM_RIGHTS`.
//!
//! Every function here is a thin, documented wrapper. Policy (what to create,
//! what to check) lives in the callers.

use std::ffi::{CStr, CString, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{MemfdFlags, Mode, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

/// Where POSIX shared-memory objects appear as files.
pub const SHM_DIR: &str = "/dev/shm";

/// Most descriptors the kernel passes in one `SCM_RIGHTS` message (`SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

// ---------------------------------------------------------------------------
// Shared memory
// ---------------------------------------------------------------------------

/// Creates an anonymous, sealable memory file (`memfd_create`), close-on-exec.
pub fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::memfd_create(
        name,
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?)
}

/// Sets the length of a memory file (`ftruncate`).
pub fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// Forbids any later change of size, and any later change of seals.
pub fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(
        fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?)
}

/// Whether the file can no longer shrink (a memfd we sealed). Files that do
/// not support seals answer `false`.
pub fn is_shrink_sealed(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(SealFlags::SHRINK))
}

/// Length in bytes, owner uid and permission bits of an open file.
pub fn file_info(fd: BorrowedFd<'_>) -> io::Result<(u64, u32, u32)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((u64::try_from(st.st_size).unwrap_or(0), st.st_uid, st.st_mode & 0o7777))
}

/// Current user id.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Maps `len` bytes of `fd` shared, readable and writable.
///
/// # Safety
///
/// The caller owns the returned mapping and must release it with [`unmap`]
/// exactly once, with the same `len`. `len` must be non-zero.
pub unsafe fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping at an address the kernel picks cannot alias any
    // Rust object; the caller owns it from here on (see `# Safety`).
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )?
    };
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// Releases a mapping made by [`map_shared`].
///
/// # Safety
///
/// `ptr`/`len` must come from one [`map_shared`] call, and no reference into
/// the mapping may be used afterwards.
pub unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees the range is exactly one live mapping of ours.
    let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len) };
}

/// Creates a POSIX shared-memory object exclusively with mode 0600.
pub fn shm_create_exclusive(name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::shm::open(
        name,
        rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )?)
}

/// Opens an existing POSIX shared-memory object read-write.
pub fn shm_open_existing(name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::shm::open(name, rustix::shm::OFlags::RDWR, Mode::empty())?)
}

/// Removes the name of a POSIX shared-memory object.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(name)?)
}

/// Names (without the leading `/`) of the POSIX shared-memory objects visible here.
pub fn shm_names() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads up to `buf.len()` bytes at `offset` without moving a file position.
pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    Ok(rustix::io::pread(fd, buf, offset)?)
}

/// Writes `data` into a new anonymous memory file and returns it (for
/// handing a large message to another process by descriptor).
pub fn memfd_with(name: &CStr, data: &[u8]) -> io::Result<OwnedFd> {
    let fd = memfd(name)?;
    let mut written = 0;
    while written < data.len() {
        written += rustix::io::write(&fd, &data[written..])?;
    }
    Ok(fd)
}

/// Reads a whole file from offset 0, refusing more than `max` bytes.
pub fn read_whole(fd: BorrowedFd<'_>, max: u64) -> io::Result<Vec<u8>> {
    let (len, _, _) = file_info(fd)?;
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("length overflows usize"))?;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = read_at(fd, &mut buf[got..], got as u64)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        got += n;
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

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

/// Waits until any of `fds` is readable (or hung up), or the timeout passes.
/// Returns one flag per descriptor. `None` waits forever. Restarts after
/// signals with the time that is left.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = left.map(|l| Timespec {
            tv_sec: i64::try_from(l.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(l.subsec_nanos()),
        });
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Ok(_) => return Ok(pfds.iter().map(|p| !p.revents().is_empty()).collect()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
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

// ---------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------

/// A connected pair of `SOCK_SEQPACKET` Unix sockets (close-on-exec):
/// message boundaries are kept and descriptors can travel with messages.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends one packet with descriptors attached.
pub fn send_packet(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("control buffer too small"));
    }
    loop {
        match rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one packet of at most `max` bytes and the descriptors attached
/// to it. An empty result with no descriptors means the peer closed.
pub fn recv_packet(sock: BorrowedFd<'_>, max: usize) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; max];
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            // A peer that closed with our messages unread in its queue makes
            // the next receive fail once with ECONNRESET; what the peer sent
            // us before closing is still queued behind that error.
            Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNRESET) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) || msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "message truncated"));
    }
    buf.truncate(msg.bytes);
    Ok((buf, fds))
}

/// Borrows every descriptor of a slice.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

// ---------------------------------------------------------------------------
// Futexes, deadlines, cheap ids
// ---------------------------------------------------------------------------

/// An absolute point on the monotonic clock, as the kernel's futex timeouts
/// take it: waits that are interrupted and restarted keep the same deadline,
/// so signals and spurious wake-ups neither shorten nor stretch a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub(super) ts: Timespec,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 2);
        let mut ts = Timespec {
            tv_sec: now.tv_sec.saturating_add(secs),
            tv_nsec: now.tv_nsec + i64::from(timeout.subsec_nanos()),
        };
        if ts.tv_nsec >= 1_000_000_000 {
            ts.tv_nsec -= 1_000_000_000;
            ts.tv_sec = ts.tv_sec.saturating_add(1);
        }
        Self { ts }
    }

    /// The earlier of two deadlines.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        if (self.ts.tv_sec, self.ts.tv_nsec) <= (other.ts.tv_sec, other.ts.tv_nsec) {
            self
        } else {
            other
        }
    }

    /// Whether the deadline has passed.
    pub fn has_passed(&self) -> bool {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        (now.tv_sec, now.tv_nsec) >= (self.ts.tv_sec, self.ts.tv_nsec)
    }
}

/// Why a futex wait returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken, or the word no longer held the expected value, or a signal:
    /// the caller re-checks its condition.
    Retry,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline`. Never uses
/// `FUTEX_PRIVATE_FLAG`: the word may live in memory shared between
/// processes.
#[allow(clippy::disallowed_types, reason = "the futex word is shared memory")]
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32, deadline: Option<Deadline>) -> FutexWait {
    let bitset = core::num::NonZeroU32::MAX;
    let ts = deadline.map(|d| d.ts);
    match rustix::thread::futex::wait_bitset(
        word,
        rustix::thread::futex::Flags::empty(),
        expected,
        ts.as_ref(),
        bitset,
    ) {
        Err(rustix::io::Errno::TIMEDOUT) => FutexWait::TimedOut,
        _ => FutexWait::Retry,
    }
}

/// Wakes up to `n` processes or threads sleeping on `word` (shared futex).
/// Returns how many were woken.
#[allow(clippy::disallowed_types, reason = "the futex word is shared memory")]
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) -> usize {
    // The kernel reads the count as an `int`: u32::MAX would mean -1 and
    // wake a single sleeper. "All" is i32::MAX.
    let n = n.min(i32::MAX.unsigned_abs());
    rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), n).unwrap_or(0)
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
    /// What this process found out about `membarrier` (`super::MB_*`).
    /// Registration is per address space: a fork child registers again
    /// (`MB_REREGISTER`), but keeps a refusal or the `SHM_MEMBARRIER=off`
    /// switch of its parent (same kernel, same seccomp filter, same
    /// environment) without reading the environment, which a child of a
    /// multi-threaded parent may not do.
    #[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
    pub static MEMBARRIER: AtomicU32 = AtomicU32::new(super::MB_UNKNOWN);

    pub extern "C" fn forget_ids() {
        // Relaxed: the child has one thread at this point.
        PID.store(0, Relaxed);
        if MEMBARRIER.load(Relaxed) == super::MB_ON {
            MEMBARRIER.store(super::MB_REREGISTER, Relaxed);
        }
        TID.with(|t| t.set(0));
    }
}

fn register_fork_hook() {
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

/// The environment variable that, set to `off` in a process, makes it use
/// the fence path of the sleep handshake instead of `membarrier` (for
/// tests, and for sandboxes that let the call through but make it slow).
/// Children inherit it; processes that share a ring should agree (see
/// [`membarrier_active`]).
pub const MEMBARRIER_ENV: &str = "SHM_MEMBARRIER";

/// Not probed yet in this process.
const MB_UNKNOWN: u32 = 0;
/// Registered in this address space; the expedited call works.
const MB_ON: u32 = 1;
/// Refused, or switched off: both sides of the handshake fence.
const MB_OFF: u32 = 2;
/// A fork child of an `MB_ON` process: register again.
const MB_REREGISTER: u32 = 3;

/// Whether the sleep handshake of the rings uses `membarrier` in this
/// process: probed once per process (registration for
/// `GLOBAL_EXPEDITED`, then one expedited call, both checked; a fork child
/// registers again), unless [`MEMBARRIER_ENV`] is `off`. When it is not
/// available (seccomp, gVisor, a kernel before 4.16, Miri), a debug line
/// says so once and [`membarrier_global`] and [`membarrier_light`] are both
/// `fence(SeqCst)`.
///
/// The mode is per process. If a process that sleeps fences while one that
/// wakes it relies on `membarrier` (the switch set in one of them only, or
/// a seccomp filter installed later in one), a wake can be missed; the
/// sleeper then finds the change at the end of its liveness slice
/// ([`crate::LIVENESS_SLICE`]): late, never lost.
#[inline]
pub fn membarrier_active() -> bool {
    // Relaxed: a process-local setting; every thread that probes finds the
    // same answer.
    match ids::MEMBARRIER.load(core::sync::atomic::Ordering::Relaxed) {
        MB_ON => true,
        MB_OFF => false,
        state => membarrier_probe(state),
    }
}

#[cold]
fn membarrier_probe(state: u32) -> bool {
    use rustix::thread::{MembarrierCommand, membarrier};
    register_fork_hook();
    let refused = if cfg!(miri) {
        Some("Miri has no membarrier".to_owned())
    } else if state == MB_UNKNOWN && std::env::var_os(MEMBARRIER_ENV).is_some_and(|v| v == "off") {
        Some(format!("{MEMBARRIER_ENV}=off"))
    } else {
        match membarrier(MembarrierCommand::RegisterGlobalExpedited)
            .and_then(|()| membarrier(MembarrierCommand::GlobalExpedited))
        {
            Ok(()) => None,
            Err(e) => Some(format!("membarrier(GLOBAL_EXPEDITED) refused: {e}")),
        }
    };
    if let Some(reason) = &refused
        && state == MB_UNKNOWN
    {
        // Not in a fork child (`MB_REREGISTER`), which may not take the
        // subscriber's locks; a refusal there is the kernel's, unexpected.
        tracing::debug!("sleep handshake uses fences ({reason})");
    }
    let on = refused.is_none();
    // Relaxed: a process-local setting; racing probes store the same.
    ids::MEMBARRIER.store(if on { MB_ON } else { MB_OFF }, core::sync::atomic::Ordering::Relaxed);
    on
}

/// Probes [`membarrier_active`] (and registers this process) ahead of use.
/// Returns whether `membarrier` is in use.
pub fn membarrier_register() -> bool {
    membarrier_active()
}

/// The slow side of the rings' sleep handshake: an asymmetric full memory
/// barrier. With `membarrier` ([`membarrier_active`]), when it returns
/// every thread of every registered process that was running has executed
/// a full barrier, so the fast side needs only [`membarrier_light`]'s
/// compiler barrier (liburcu's `sys_membarrier` scheme). Without it, a
/// `fence(SeqCst)`, paired with the fast side's.
pub fn membarrier_global() {
    if !membarrier_active() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        return;
    }
    if rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_err() {
        // Worked at the probe, refused now: the slow global barrier still
        // reaches every running thread of every process.
        let _ = rustix::thread::membarrier(rustix::thread::MembarrierCommand::Global);
    }
}

/// The fast side of the rings' sleep handshake: a compiler barrier when
/// [`membarrier_global`] issues `membarrier`, a `fence(SeqCst)` otherwise.
/// Costs one process-local load and a predicted branch over the barrier.
#[inline]
pub fn membarrier_light() {
    if membarrier_active() {
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    } else {
        light_fence();
    }
}

#[cold]
#[inline(never)]
fn light_fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Nanoseconds on the monotonic clock: comparable between processes of
/// this machine (for latency measurements).
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The switch forces the fence path, the answer does not change once
    /// probed, and both sides of the handshake run in either mode.
    #[test]
    fn membarrier_mode_follows_the_switch_and_stays() {
        let off = std::env::var_os(MEMBARRIER_ENV).is_some_and(|v| v == "off");
        let active = membarrier_active();
        if off || cfg!(miri) {
            assert!(!active, "{MEMBARRIER_ENV}=off (or Miri) must select the fence path");
        }
        assert_eq!(membarrier_register(), active, "the probe is made once");
        membarrier_global();
        membarrier_light();
        assert_eq!(membarrier_active(), active, "the mode does not change");
    }
}
