//! Pinning the calling thread to a CPU, so that two processes that must
//! run at once really do (on two CPUs the scheduler may queue both on one
//! CPU for a whole time slice, and a woken process is often pulled onto
//! its waker's CPU).

use std::io;

/// CPUs a `cpu_set_t` can name.
const CPUS: usize = size_of::<libc::cpu_set_t>() * 8;

/// The calling thread pinned to one CPU; the previous mask comes back on drop.
#[derive(Debug)]
pub struct Pinned {
    old: libc::cpu_set_t,
}

/// The CPUs this thread may run on.
///
/// # Errors
///
/// If `sched_getaffinity` fails.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = affinity()?;
    // SAFETY: `set` is an initialised cpu_set_t and every index is within it.
    Ok((0..CPUS).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

fn affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and as large as we say; 0 is this thread.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set) };
    if r == 0 {
        Ok(set)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `set` is an initialised cpu_set_t of the size we pass.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling thread to `cpu` until the guard drops.
///
/// # Errors
///
/// If `cpu` is out of range or not allowed, or the affinity calls fail.
pub fn pin_to(cpu: usize) -> io::Result<Pinned> {
    let old = affinity()?;
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= CPUS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `cpu` is within the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(&set)?;
    Ok(Pinned { old })
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = set_affinity(&self.old);
    }
}
