//! Processes with Python's semantics: `Process`, start methods, the current
//! and parent process, active children, and `init()`.
//!
//! ```no_run
//! fn square(n: u64) {
//!     println!("{n}^2 = {}", n * n);
//! }
//!
//! fn main() -> Result<(), shmproc_core::ProcessError> {
//!     shmproc_core::init(); // first: spawned children dispatch to their target here
//!     let p = shmproc_core::Process::new(square, 7);
//!     p.start()?;
//!     assert_eq!(p.join()?, 0);
//!     Ok(())
//! }
//! ```

mod bootstrap;
mod child;
mod context;
mod current;
mod forkserver;
mod launch;
mod popen;
mod target;

use std::io::Write as _;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use child::Process;
pub use context::{
    Context, StartMethod, UnknownStartMethod, get_all_start_methods, get_context, get_start_method, set_start_method,
};
pub use current::{CurrentProcess, ParentProcess, active_children, current_process, parent_process};
pub use forkserver::server_pid as forkserver_pid;
pub use target::{ExitReport, FnRef};
#[doc(hidden)]
pub use target::{code_address_of, code_offset_of};

use crate::sync::shared::AtomicU8;
use crate::sync::shared::Ordering::{Acquire, Release};
use crate::sys;

/// Where `init` stands in this process: [`UNINIT`], [`RUNNING`] or [`DONE`].
///
/// Not a `std::sync::Once`: the fork server is forked while `init` runs, and
/// a `Once` copied in its running state blocks forever every later call in
/// the copy (the server and every child it forks). This word is set to
/// [`DONE`] by the server as it starts serving and by a spawned or
/// forkserver child once it took its bootstrap ([`init_done`]), so a child
/// calling `init()` again returns at once.
static INIT: AtomicU8 = AtomicU8::new(UNINIT);
const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// Marks `init` done in this process: a fork server (perhaps just forked
/// from a process inside `init`), or a child that took its bootstrap.
pub(crate) fn init_done() {
    // Release: pairs with the Acquire loads of `init` and `init_completed`.
    INIT.store(DONE, Release);
}

fn init_completed() -> bool {
    // Acquire: pairs with the Release store of `init_done`.
    INIT.load(Acquire) == DONE
}

/// Prepares shm in this program. Call it as the **first statement of
/// `main`**, like Python's `if __name__ == '__main__':` guard.
///
/// - In a child started by the spawn method (this executable run again),
///   it receives the target and its arguments, checks that it runs the same
///   executable as its parent, runs the target and exits: it never returns.
///   The same holds in a process started as the fork server.
/// - In any other process it starts the fork server (the default start
///   method) while the program is still single-threaded, and returns.
///
/// Calling it again does nothing, in any process: a child started by any
/// method (a library calling `init()` defensively) returns at once.
pub fn init() {
    if let Some(fd) = std::env::var_os(forkserver::SERVER_ENV) {
        // SAFETY: as for SPAWN_ENV below: a process exec'd as the fork server
        // runs `init` first in `main`, single-threaded. Removed so that the
        // server's children, which inherit its environment, do not take
        // themselves for a server when they call `init()`.
        unsafe {
            std::env::remove_var(forkserver::SERVER_ENV);
        }
        forkserver::serve_from_env(&fd.to_string_lossy());
    }
    if let Some(fd) = std::env::var_os(bootstrap::SPAWN_ENV) {
        // SAFETY: `init` is documented to run first in `main`, before the
        // program starts threads; in a spawned child no user code has run.
        // No other thread can be reading the environment.
        unsafe { std::env::remove_var(bootstrap::SPAWN_ENV) };
        let fd: i32 = fd.to_string_lossy().parse().unwrap_or(-1);
        // SAFETY: the parent placed our bootstrap socket at this descriptor
        // (spawn protocol); nothing else in this new process owns it.
        match unsafe { sys::adopt_fd(fd) } {
            Ok(sock) => bootstrap::run_child(sock, true),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "shm: spawned child has no bootstrap socket: {e}");
                sys::exit_now(1);
            }
        }
    }
    // Acquire on both outcomes: pairs with the Release store of `init_done`.
    match INIT.compare_exchange(UNINIT, RUNNING, Acquire, Acquire) {
        Ok(_) => {
            if sys::thread_count() == 1
                && let Err(e) = forkserver::start_by_fork()
            {
                tracing::warn!("fork server not started at init ({e}); it will be spawned on first use");
            }
            init_done();
        }
        Err(DONE) => {}
        Err(_) => {
            // Another thread of this process runs `init` (RUNNING is never
            // inherited: the only fork made under it marks its child done,
            // and a fork start needs a single thread). Its work is short: a
            // fork at most. Wait for it, as `Once` would.
            while !init_completed() {
                std::thread::yield_now();
            }
        }
    }
}

const MISSING_INIT: &str = "this process was started by the spawn method, but `main` did not call `shmproc::init()` \
                            first: add `shmproc::init();` as the first line of `main`";

/// A unit of work that runs in its own process, as a user type (the Rust
/// form of subclassing Python's `Process` and overriding `run`).
pub trait Worker: Serialize + DeserializeOwned + Send + 'static {
    /// What the child does.
    fn run(self);
}

fn run_worker<W: Worker>(w: W) {
    w.run();
}
