//! Process start+join per start method, against raw OS floors and Python.
//!
//! - Ours: `Process::new(noop, ())` with a start method, then `start()` and
//!   `join()` timed together.
//! - Fork floor (for fork and forkserver): `fork`, `_exit(0)`, `waitpid`.
//! - Spawn floor: `fork`, `execv("/proc/self/exe", [argv0, "--exit-now"])`,
//!   `waitpid` of this very binary; and the same through `posix_spawn`
//!   (`std::process::Command`).
//! - Peer: Python's `multiprocessing` with the same start method
//!   (`python/process_start.py`).

use std::ffi::CString;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use shmproc::{Process, StartMethod};

use crate::Mode;
use crate::harness::plot::{Chart, Kind};
use crate::harness::python;
use crate::harness::report::{Measured, Report, Row, Target};
use crate::harness::stats::{Case, Unit, time_interleaved};

/// The argument that makes the benchmark binary exit at once (the first
/// thing its `main` checks, before `shmproc::init()`).
pub const EXIT_NOW: &str = "--exit-now";

/// The child's target: does nothing.
pub fn noop(_: ()) {}

/// Starts and joins one child running [`noop`]; returns the time of
/// `start()` + `join()` (building the `Process` is not counted).
///
/// # Panics
///
/// If the child cannot be started or does not exit with 0.
pub fn ours(method: StartMethod) -> Duration {
    let p = Process::new(noop, ()).with_start_method(method);
    let t = Instant::now();
    p.start().expect("start a child");
    let code = p.join().expect("join a child");
    let d = t.elapsed();
    assert_eq!(code, 0, "{method} child exit code");
    d
}

/// The fork floor: `fork`, the child `_exit(0)`s, the parent `waitpid`s.
///
/// # Panics
///
/// If `fork` fails or the child does not exit with 0.
pub fn fork_exit_wait() {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe, so
    // fork's rule for multi-threaded parents holds whatever threads exist.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` may be called at any time; it does not return.
        unsafe { libc::_exit(0) }
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    wait_ok(pid);
}

fn wait_ok(pid: libc::pid_t) {
    let mut status: libc::c_int = 0;
    // SAFETY: `pid` is a child of ours not yet reaped; `status` is a valid
    // place for the kernel to write to.
    let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child ended with status {status:#x}"
    );
}

/// This binary run again with `--exit-now`, its argv built before any fork
/// so that the forked child only calls `execv` and `_exit`.
#[derive(Debug)]
pub struct SelfExec {
    path: CString,
    argv: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl SelfExec {
    /// Prepares `/proc/self/exe` with argv `[argv0, "--exit-now"]`.
    ///
    /// # Panics
    ///
    /// If `argv[0]` contains a NUL byte (the kernel never passes one).
    pub fn new() -> Self {
        let argv0 = std::env::args_os().next().unwrap_or_else(|| "compare".into());
        let argv = vec![
            CString::new(argv0.into_vec()).expect("argv[0] has no NUL byte"),
            CString::new(EXIT_NOW).expect("a literal without NUL"),
        ];
        // The pointers target the strings' heap buffers, which stay put when
        // `argv` moves into `Self`.
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Self {
            path: c"/proc/self/exe".to_owned(),
            argv,
            ptrs,
        }
    }

    /// The spawn floor: `fork`, `execv` this binary, `waitpid`.
    ///
    /// # Panics
    ///
    /// If `fork` fails or the child does not exit with 0.
    pub fn fork_exec_wait(&self) {
        debug_assert!(self.ptrs.last().is_some_and(|p| p.is_null()));
        // SAFETY: the child only calls `execv` and `_exit` (both
        // async-signal-safe) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: `path` is a C string and `ptrs` a null-terminated
            // array of C strings owned by `self.argv`, alive in this copy of
            // the parent's memory. On success it does not return.
            unsafe { libc::execv(self.path.as_ptr(), self.ptrs.as_ptr()) };
            // SAFETY: exec failed; leave without touching the parent's state.
            unsafe { libc::_exit(127) }
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        wait_ok(pid);
    }

    /// The same through `posix_spawn` (`Command` without `pre_exec` uses it).
    ///
    /// # Panics
    ///
    /// If the child cannot be started or does not exit with 0.
    pub fn posix_spawn_wait(&self) {
        let argv0 = std::ffi::OsStr::from_bytes(self.argv[0].as_bytes());
        let status = Command::new("/proc/self/exe")
            .arg0(argv0)
            .arg(EXIT_NOW)
            .status()
            .expect("posix_spawn this binary");
        assert!(status.success(), "child ended with {status}");
    }
}

impl Default for SelfExec {
    fn default() -> Self {
        Self::new()
    }
}

/// Measures everything and adds the rows, notes and `process_start.svg` to `report`.
pub fn run(mode: Mode, report: &mut Report) {
    let exec = SelfExec::new();
    let (n_fork, n_spawn) = (mode.scale(500), mode.scale(200));
    let (w_fork, w_spawn) = (mode.warmup(20), mode.warmup(5));
    // Each comparison alternates its cases call by call: whichever case ran
    // first after another group's burst (exec-heavy spawns, the fork
    // server's wake-ups) was measurably slower when cases ran in blocks, so
    // a block order would bias the ratio.
    let mut fork_cases = [
        Case::timed(n_fork, w_fork, || ours(StartMethod::Fork)),
        Case::new(n_fork, w_fork, fork_exit_wait),
    ];
    let mut s = time_interleaved(n_fork, &mut fork_cases);
    drop(fork_cases);
    let mut server_cases = [Case::timed(n_fork, w_fork, || ours(StartMethod::ForkServer))];
    s.extend(time_interleaved(mode.rounds(), &mut server_cases));
    drop(server_cases);
    let mut spawn_cases = [
        Case::timed(n_spawn, w_spawn, || ours(StartMethod::Spawn)),
        Case::new(n_spawn, w_spawn, || exec.fork_exec_wait()),
        Case::new(n_spawn, w_spawn, || exec.posix_spawn_wait()),
    ];
    s.extend(time_interleaved(n_spawn, &mut spawn_cases));
    drop(spawn_cases);
    let mut m = |name: &str, i: usize| report.measure(Measured::new(name, s[i]));
    let ours_fork = m("shm Process, fork", 0);
    let raw_fork = m("fork+_exit+waitpid (raw)", 1);
    let ours_fs = m("shm Process, forkserver", 2);
    let ours_spawn = m("shm Process, spawn", 3);
    let fork_exec = m("fork+execv(self)+waitpid (raw)", 4);
    let posix_spawn = m("posix_spawn(self)+wait (std Command)", 5);

    let args = python::args(&[
        ("--fork", mode.scale(50)),
        ("--forkserver", mode.scale(50)),
        ("--spawn", mode.scale(20)),
        ("--warmup", mode.warmup(3)),
    ]);
    let py = python::run("process_start.py", &args);
    let py_name = match &py {
        Ok(j) => format!("Python {}", j.text("python").unwrap_or("3")),
        Err(why) => {
            report.skipped.push(format!("Python process-start rows ({why})"));
            "Python".to_owned()
        }
    };

    let floor_rows = [
        ("fork", &ours_fork, &raw_fork, Target::AtMost(1.3)),
        ("forkserver", &ours_fs, &raw_fork, Target::None),
        ("spawn", &ours_spawn, &fork_exec, Target::AtMost(1.3)),
        ("spawn", &ours_spawn, &posix_spawn, Target::None),
    ];
    for (method, ours, floor, target) in floor_rows {
        let row = Row::new(
            format!("process start+join, {method}"),
            ours.clone(),
            &floor.name,
            Some(floor.stats),
        );
        report.rows.push(row.target(target));
    }
    let mut chart = Chart::new("process_start.svg", "Process start+join (median, p10..p90)");
    let groups = [
        ("fork", &ours_fork, vec![&raw_fork]),
        ("forkserver", &ours_fs, vec![]),
        ("spawn", &ours_spawn, vec![&fork_exec, &posix_spawn]),
    ];
    for (method, ours, floors) in groups {
        let peer = py.as_ref().ok().and_then(|j| j.stats(method, Unit::Seconds));
        let peer_label = format!("{py_name} multiprocessing, {method}");
        if let Some(p) = peer {
            report.measure(Measured::new(&peer_label, p));
        }
        let row = Row::new(format!("process start+join, {method}"), ours.clone(), peer_label, peer);
        // At least 10x faster than Python: ours/python ≤ 0.1.
        report.rows.push(row.target(Target::AtMost(0.1)));
        chart = chart.bar(&ours.name, ours.stats, Kind::Ours);
        for floor in floors {
            chart = chart.bar(&floor.name, floor.stats, Kind::Floor);
        }
        if let Some(p) = peer {
            chart = chart.bar(format!("{py_name} {method}"), p, Kind::Peer);
        }
    }
    report.charts.push(chart);
}
