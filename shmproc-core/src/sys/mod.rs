//! The only place in `shmproc-core` that makes system calls.
//!
//! `mod.rs` picks the operating system and re-exports one API, as std's
//! `sys/sync/futex/mod.rs` does. Only Linux is implemented today; the rest of
//! the crate never names an OS, so a macOS module can slot in beside it.

#[cfg(target_os = "linux")]
#[cfg_attr(miri, allow(dead_code, reason = "under Miri, miri.rs replaces part of it"))]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

// Under Miri, the calls Miri cannot run are replaced by heap and table
// stand-ins; naming them here shadows the glob above.
#[cfg(all(miri, target_os = "linux"))]
mod miri;
#[cfg(all(miri, target_os = "linux"))]
pub use miri::{
    cached_pid, cached_tid, file_info, futex_wait, futex_wake, is_shrink_sealed, live_children, map_shared,
    membarrier_active, membarrier_global, membarrier_light, membarrier_register, memfd, memory_size, read_at,
    seal_shrink, seal_size, set_len, shm_create_exclusive, shm_names, shm_open_existing, shm_unlink, task_stat,
    thread_count, uid, unmap,
};

#[cfg(not(target_os = "linux"))]
compile_error!("shm supports Linux only for now; every platform call lives in shmproc-core/src/sys/");
