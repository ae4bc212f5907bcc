//! Stand-ins, under `cfg(miri)` only, for the calls of `linux.rs` that Miri
//! cannot run, so that the segment, ring, value, array and lock code above
//! them runs under Miri's checks in one process.
//!
//! `mod.rs` re-exports each item here by name, which shadows the glob
//! re-export of `linux.rs`; everything not listed (futex wait and wake,
//! clocks, `getpid`) is the real call, which Miri emulates itself.
//!
//! - A memory file is an `eventfd` whose counter holds the index of a heap
//!   allocation (zeroed, page-aligned) in a process-global table, so the
//!   index survives `dup` as a file does. Files are never freed: Miri cannot
//!   see a descriptor close, and the table keeps them reachable.
//! - Named objects are a name-to-file map in the same table.
//! - Thread ids are counted from [`FIRST_TID`]; a thread's id is dead once
//!   the thread has ended.
//! - Futex calls go to Miri's own `SYS_futex` emulation with explicit
//!   pointer arguments (rustix passes integers as pointers, which
//!   `-Zmiri-strict-provenance` refuses).
//! - `membarrier` is unavailable: the slow side of the handshake is a
//!   `SeqCst` fence.

use std::alloc::Layout;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Alignment of the stand-in mappings: a page, as `mmap` gives.
const PAGE: usize = 4096;

/// First fake thread id; far above the fake pid Miri reports.
pub const FIRST_TID: u32 = 0x0100_0000;

/// One memory file.
struct File {
    /// The allocation, made by the first `set_len`.
    mem: Option<(NonNull<u8>, usize)>,
    sealed: bool,
    /// Sealed against shrinking only ([`seal_shrink`]): it may be mapped
    /// past its end (the growable segments' reserve), though it never
    /// grows here.
    growable: bool,
}

struct Table {
    files: Vec<File>,
    names: BTreeMap<String, u32>,
    live_tids: BTreeSet<u32>,
    next_tid: u32,
}

// SAFETY: the pointers in the table are heap allocations owned by the table
// itself and never freed; they carry no thread affinity.
unsafe impl Send for Table {}

static TABLE: Mutex<Table> = Mutex::new(Table {
    files: Vec::new(),
    names: BTreeMap::new(),
    live_tids: BTreeSet::new(),
    next_tid: 0,
});

fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A new descriptor naming file `index`. The counter holds `index + 1`:
/// a zero counter cannot be read.
fn open_file(index: u32) -> io::Result<OwnedFd> {
    let count = index.checked_add(1).ok_or_else(|| err(libc::EMFILE))?;
    // SAFETY: eventfd takes no pointers.
    let fd = unsafe { libc::eventfd(count, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The file index behind `fd`. Reading an eventfd empties its counter, so
/// the value is written back; the caller holds the table lock, which every
/// reader of these counters takes.
fn index_of(fd: BorrowedFd<'_>, _held: &Table) -> io::Result<usize> {
    let mut value = 0u64;
    // SAFETY: `value` is 8 writable bytes, as eventfd reads need.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut value).cast(), 8) };
    if n != 8 {
        return Err(err(libc::EBADF));
    }
    // SAFETY: `value` is 8 readable bytes.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&raw const value).cast(), 8) };
    if n != 8 {
        return Err(err(libc::EBADF));
    }
    usize::try_from(value - 1).map_err(|_| err(libc::EBADF))
}

fn new_file(t: &mut Table) -> io::Result<OwnedFd> {
    let index = u32::try_from(t.files.len()).map_err(|_| err(libc::EMFILE))?;
    t.files.push(File {
        mem: None,
        sealed: false,
        growable: false,
    });
    open_file(index)
}

/// Stand-in for `memfd_create`.
pub fn memfd(_name: &CStr) -> io::Result<OwnedFd> {
    new_file(&mut table())
}

/// Stand-in for `ftruncate`: allocates on the first call; a later change of
/// size is refused (sealed, or a stand-in limit).
pub fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let mut t = table();
    let i = index_of(fd, &t)?;
    let file = t.files.get_mut(i).ok_or_else(|| err(libc::EBADF))?;
    let len = usize::try_from(len).map_err(|_| err(libc::EFBIG))?;
    match file.mem {
        Some((_, have)) if have == len => Ok(()),
        Some(_) => Err(err(if file.sealed { libc::EPERM } else { libc::ENOTSUP })),
        None => {
            let layout = Layout::from_size_align(len.max(1), PAGE).map_err(|_| err(libc::EFBIG))?;
            // SAFETY: the layout has a non-zero size.
            let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| err(libc::ENOMEM))?;
            file.mem = Some((ptr, len));
            Ok(())
        }
    }
}

/// Stand-in for adding the size seals.
pub fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut t = table();
    let i = index_of(fd, &t)?;
    t.files.get_mut(i).ok_or_else(|| err(libc::EBADF))?.sealed = true;
    Ok(())
}

/// Stand-in for adding the shrink seal: the file keeps its size (growth is
/// not emulated), but may be mapped past its end.
pub fn seal_shrink(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut t = table();
    let i = index_of(fd, &t)?;
    let file = t.files.get_mut(i).ok_or_else(|| err(libc::EBADF))?;
    file.sealed = true;
    file.growable = true;
    Ok(())
}

/// Whether [`seal_size`] was called on the file.
pub fn is_shrink_sealed(fd: BorrowedFd<'_>) -> bool {
    let t = table();
    index_of(fd, &t)
        .ok()
        .and_then(|i| t.files.get(i))
        .is_some_and(|f| f.sealed)
}

/// Length, owner (this user) and mode 0600 of a file.
pub fn file_info(fd: BorrowedFd<'_>) -> io::Result<(u64, u32, u32)> {
    let t = table();
    let i = index_of(fd, &t)?;
    let file = t.files.get(i).ok_or_else(|| err(libc::EBADF))?;
    Ok((file.mem.map_or(0, |(_, len)| len as u64), uid(), 0o600))
}

/// A fixed user id.
pub fn uid() -> u32 {
    1000
}

/// Stand-in for `mmap`: the file's allocation itself, so that every
/// "mapping" of one file shares its bytes.
///
/// # Safety
///
/// As `linux::map_shared`.
pub unsafe fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<NonNull<u8>> {
    let t = table();
    let i = index_of(fd, &t)?;
    match t.files.get(i).and_then(|f| f.mem) {
        Some((ptr, have)) if len <= have || t.files.get(i).is_some_and(|f| f.growable) => Ok(ptr),
        Some(_) | None => Err(err(libc::ENXIO)),
    }
}

/// Stand-in for `munmap`: nothing (the memory belongs to its file).
///
/// # Safety
///
/// As `linux::unmap`.
pub unsafe fn unmap(_ptr: NonNull<u8>, _len: usize) {}

/// Stand-in for `shm_open(O_CREAT | O_EXCL)`.
pub fn shm_create_exclusive(name: &str) -> io::Result<OwnedFd> {
    let mut t = table();
    if t.names.contains_key(name) {
        return Err(err(libc::EEXIST));
    }
    let index = u32::try_from(t.files.len()).map_err(|_| err(libc::EMFILE))?;
    let fd = new_file(&mut t)?;
    t.names.insert(name.to_owned(), index);
    Ok(fd)
}

/// Stand-in for `shm_open` of an existing name.
pub fn shm_open_existing(name: &str) -> io::Result<OwnedFd> {
    let t = table();
    let index = *t.names.get(name).ok_or_else(|| err(libc::ENOENT))?;
    open_file(index)
}

/// Stand-in for `shm_unlink`.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    table().names.remove(name).map(drop).ok_or_else(|| err(libc::ENOENT))
}

/// The names in the stand-in table, without the leading `/`.
pub fn shm_names() -> io::Result<Vec<String>> {
    Ok(table()
        .names
        .keys()
        .map(|n| n.trim_start_matches('/').to_owned())
        .collect())
}

/// Copies from a file's bytes at `offset`.
pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let t = table();
    let i = index_of(fd, &t)?;
    let Some((ptr, len)) = t.files.get(i).and_then(|f| f.mem) else {
        return Ok(0);
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
    let n = buf.len().min(len - start);
    // SAFETY: `start <= len`: inside the file's allocation or one past it.
    let from = unsafe { ptr.as_ptr().add(start) };
    // SAFETY: `start + n <= len`, inside the allocation; `buf` is a distinct
    // Rust buffer. Callers read only headers nobody writes at the time.
    unsafe { std::ptr::copy_nonoverlapping(from, buf.as_mut_ptr(), n) };
    Ok(n)
}

/// A fixed 16 GiB.
pub fn memory_size() -> u64 {
    16 << 30
}

/// This process (start time 0) and the threads that have not ended (start
/// unknown) run; any other id names nothing.
pub fn task_stat(id: u32) -> super::linux::TaskStat {
    use super::linux::TaskStat;
    if id == cached_pid() {
        TaskStat::Running { start: Some(0) }
    } else if table().live_tids.contains(&id) {
        TaskStat::Running { start: None }
    } else {
        TaskStat::Gone
    }
}

/// One thread.
pub fn thread_count() -> usize {
    1
}

/// No children under Miri.
pub fn live_children() -> Option<Vec<u32>> {
    Some(Vec::new())
}

/// This process's id (Miri's fake one).
pub fn cached_pid() -> u32 {
    super::linux::getpid()
}

/// Removes a thread's id from the live set when the thread ends.
struct TidGuard(u32);

impl Drop for TidGuard {
    fn drop(&mut self) {
        table().live_tids.remove(&self.0);
    }
}

thread_local! {
    static TID: TidGuard = {
        let mut t = table();
        let tid = FIRST_TID + t.next_tid;
        t.next_tid += 1;
        t.live_tids.insert(tid);
        TidGuard(tid)
    };
}

/// A fake id for the calling thread, alive until the thread ends.
pub fn cached_tid() -> u32 {
    TID.with(|g| g.0)
}

/// `futex(FUTEX_WAIT_BITSET)` as `linux::futex_wait`, with an absolute
/// monotonic deadline.
#[allow(clippy::disallowed_types, reason = "the futex word is shared memory")]
pub fn futex_wait(
    word: &core::sync::atomic::AtomicU32,
    expected: u32,
    deadline: Option<super::linux::Deadline>,
) -> super::linux::FutexWait {
    let ts = deadline.map(|d| libc::timespec {
        tv_sec: d.ts.tv_sec,
        tv_nsec: d.ts.tv_nsec,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `word` is a live atomic, `tsp` null or a live timespec;
    // FUTEX_WAIT_BITSET reads no second address.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            tsp,
            std::ptr::null::<u32>(),
            u32::MAX,
        )
    };
    if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        super::linux::FutexWait::TimedOut
    } else {
        super::linux::FutexWait::Retry
    }
}

/// `futex(FUTEX_WAKE)` as `linux::futex_wake`.
#[allow(clippy::disallowed_types, reason = "the futex word is shared memory")]
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX.unsigned_abs());
    // SAFETY: `word` is a live atomic; FUTEX_WAKE reads nothing else.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    usize::try_from(rc).unwrap_or(0)
}

/// `membarrier` is unavailable under Miri.
pub fn membarrier_active() -> bool {
    false
}

/// `membarrier` is unavailable under Miri.
pub fn membarrier_register() -> bool {
    false
}

/// The fast side of the sleep handshake without `membarrier`: a `SeqCst`
/// fence, paired with [`membarrier_global`]'s.
pub fn membarrier_light() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// The slow side of the sleep handshake without `membarrier`: a `SeqCst`
/// fence.
pub fn membarrier_global() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
