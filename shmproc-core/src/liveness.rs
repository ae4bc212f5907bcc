//! Whether a process (or thread) still runs, safe against pid reuse.
//!
//! The one liveness check of the library: every "is the holder, the
//! creator, the peer, the parent still there?" question comes here. A task
//! is named by its id **and** what is known of its start time
//! ([`Started`]): a pid the kernel handed to a new process after the old
//! one died has another start time, so it does not read as the old one.
//!
//! Words in shared memory that have room for only 32 bits (a lock's owner)
//! keep a 9-bit tag of the start time ([`start_tag`], [`Started::Tag`]);
//! headers with room keep the whole start time ([`Started::At`]).

use crate::sys::{self, TaskStat};

/// What the caller knows of when the task it names started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// Nothing: any running task with the id counts (not safe against reuse;
    /// for ids that cannot be reused meanwhile, such as an unreaped child).
    Any,
    /// Its start time, in clock ticks since boot ([`start_time`]).
    At(u64),
    /// The [`start_tag`] of its start time (1..=511; 0 never matches).
    Tag(u32),
}

impl Started {
    /// [`Started::At`] `start`, or [`Started::Any`] when `start` is 0 (a
    /// start time recorded where `/proc` could not tell).
    pub fn at_or_any(start: u64) -> Self {
        if start == 0 { Self::Any } else { Self::At(start) }
    }
}

/// Largest start tag; tags are 1..=`TAG_MASK` and fit in 9 bits.
pub const TAG_MASK: u32 = 0x1ff;

/// The start time of task `id` (a pid or a tid) in clock ticks since boot;
/// with the id it names one task across id reuse. `None` if no such task
/// runs or its start time cannot be read.
pub fn start_time(id: u32) -> Option<u64> {
    match sys::task_stat(id) {
        TaskStat::Running { start } => start,
        TaskStat::Gone | TaskStat::Ended => None,
    }
}

/// This process's start time, read once per process (a fork child reads its
/// own); 0 when `/proc` cannot tell (then no other process can check it
/// either, and [`is_alive`] treats 0 in a header as unknown).
pub fn own_start_time() -> u64 {
    #[allow(clippy::disallowed_types, reason = "a process-local cache, not shared memory")]
    static CACHE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let pid = sys::cached_pid();
    // Relaxed: a process-local cache of `pid << 40 | start`; a
    // stale value (another pid: a fork child) fails the comparison below.
    let cached = CACHE.load(std::sync::atomic::Ordering::Relaxed);
    #[allow(clippy::cast_possible_truncation, reason = "the pid is the high half")]
    let cached_pid = (cached >> 40) as u32;
    if cached != 0 && cached_pid == pid {
        return cached & ((1 << 40) - 1);
    }
    let start = start_time(pid).unwrap_or(0);
    if start < 1 << 40 {
        // Relaxed: as above.
        CACHE.store(u64::from(pid) << 40 | start, std::sync::atomic::Ordering::Relaxed);
    }
    start
}

/// The tag of a task that started `start` clock ticks after boot: 1..=511,
/// never 0, so that a word with no tag (a bare pid, garbage, a stale word of
/// an older layout) never names a task. Consecutive ticks get unrelated
/// tags (a multiplicative hash).
#[inline]
pub fn start_tag(start: u64) -> u32 {
    #[allow(clippy::cast_possible_truncation, reason = "24 bits remain after the shift")]
    let h = (start.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as u32;
    1 + h % TAG_MASK
}

/// Whether task `id` runs now (a zombie counts as ended) and is the one
/// `started` describes. Id 0 names nothing.
///
/// When `/proc` shows the task but hides its start time (hidepid), it counts
/// as the one described: we cannot tell, and taking a live holder for dead
/// is the worse mistake.
pub fn is_alive(id: u32, started: Started) -> bool {
    if id == 0 || started == Started::Tag(0) {
        return false;
    }
    match sys::task_stat(id) {
        TaskStat::Gone | TaskStat::Ended => false,
        TaskStat::Running { start: None } => true,
        TaskStat::Running { start: Some(now) } => match started {
            Started::Any => true,
            Started::At(then) => now == then,
            Started::Tag(tag) => start_tag(now) == tag,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn this_process_is_alive_only_with_its_own_start() {
        let me = std::process::id();
        let start = own_start_time();
        assert_eq!(start_time(me), Some(start));
        assert!(is_alive(me, Started::Any));
        assert!(is_alive(me, Started::At(start)));
        assert!(
            !is_alive(me, Started::At(start + 1)),
            "another start time is another process"
        );
        assert!(is_alive(me, Started::Tag(start_tag(start))));
        assert!(!is_alive(me, Started::Tag(0)), "tag 0 names nothing");
        assert!(!is_alive(0, Started::Any));
    }

    #[test]
    #[cfg_attr(miri, ignore = "starts a process")]
    fn a_reaped_child_is_dead_and_a_zombie_too() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        // Not reaped yet: once it has exited it is a zombie, which counts as ended.
        let begin = std::time::Instant::now();
        while is_alive(pid, Started::Any) {
            assert!(
                begin.elapsed() < std::time::Duration::from_secs(60),
                "exited child still alive"
            );
            std::thread::yield_now();
        }
        child.wait().expect("reap");
        assert!(!is_alive(pid, Started::Any));
    }

    #[test]
    fn tags_are_never_zero() {
        for s in 0..10_000 {
            let t = start_tag(s);
            assert!((1..=TAG_MASK).contains(&t));
        }
    }
}
