//! The only place in `shm-core` that makes system calls.
//!
//! `mod.rs` picks the operating system and re-exports one API, as std's
//! `sys/sync/futex/mod.rs` does. Only Linux is implemented today; the rest of
//! the crate never names an OS, so a macOS module can slot in beside it.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!("shm supports Linux only for now; every platform call lives in shm-core/src/sys/");
