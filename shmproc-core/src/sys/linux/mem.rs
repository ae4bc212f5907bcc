//! Shared memory: memfd, seals, mmap, POSIX shm objects in `/dev/shm`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, Mode, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Where POSIX shared-memory objects appear as files.
pub const SHM_DIR: &str = "/dev/shm";

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

/// Forbids shrinking and any later change of seals; growing stays allowed.
pub fn seal_shrink(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::SEAL)?)
}

/// Whether the file can no longer shrink (a memfd we sealed). Files that do
/// not support seals answer `false`.
pub fn is_shrink_sealed(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(SealFlags::SHRINK))
}

/// Opens, read-write, the file that descriptor `fd` of process `pid`
/// names (`/proc/<pid>/fd/<fd>`): how a handle received as plain bytes
/// reaches the sender's segment. Needs the same user as `pid`.
pub fn open_fd_of(pid: u32, fd: i32) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        format!("/proc/{pid}/fd/{fd}"),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The device and inode of an open file: what names it, whatever
/// descriptor it is reached through.
pub fn file_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
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
