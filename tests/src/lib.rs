//! Helpers for the cross-process tests: run a program with a hang guard,
//! tell whether a pid still runs, and the list of start methods.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use shmproc::StartMethod;

/// Generous bound on any one program: it only guards against hangs.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Every start method.
pub const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer];

/// Runs `program` with `args` under start method `method` (through
/// `SHM_START_METHOD`), killing it if it outlives [`HANG_GUARD`].
///
/// # Panics
///
/// If the program cannot be started or hangs.
pub fn run(program: &str, method: StartMethod, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("SHM_START_METHOD", method.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{program} ({method}) hung; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A test's verdict: `Err` carries what went wrong.
pub type TestResult = Result<(), libtest_mimic::Failed>;

/// Fails with `msg` unless `cond` holds.
///
/// # Errors
///
/// `msg`, when `cond` is false.
pub fn check(cond: bool, msg: impl Into<String>) -> TestResult {
    if cond { Ok(()) } else { Err(msg.into().into()) }
}

/// Runs `tests` with the arguments of the command line, one at a time (fork
/// children copy only the forking thread, so the runner stays
/// single-threaded), and exits. Call `shmproc::init()` before building the tests.
pub fn run_trials(tests: Vec<libtest_mimic::Trial>) -> ! {
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, tests).exit()
}

/// Starts every process, then joins them all; fails unless each exits 0.
///
/// # Errors
///
/// The first start error, or the first child that did not exit with 0.
pub fn run_all(procs: &[shmproc::Process]) -> TestResult {
    for p in procs {
        p.start()?;
    }
    for p in procs {
        match p.join() {
            Ok(0) => {}
            other => return Err(format!("{} ended with {other:?}", p.name()).into()),
        }
    }
    Ok(())
}

/// Waits until `cond` holds, looking every millisecond.
///
/// # Panics
///
/// If it does not hold within [`HANG_GUARD`] (a hang: a child died or a
/// wake was lost), with `what` in the message.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < HANG_GUARD,
            "gave up after {HANG_GUARD:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until a child sets `flag` to 1.
///
/// # Panics
///
/// If that does not happen within [`HANG_GUARD`].
pub fn wait_flag(flag: &shmproc::RawValue<u32>) {
    // Acquire: pairs with the child's Release store.
    wait_until("a child to set its flag", || {
        flag.load(std::sync::atomic::Ordering::Acquire) == 1
    });
}

/// For a child that its parent will kill: sleeps, and if nobody kills it
/// within [`HANG_GUARD`], panics rather than live on.
///
/// # Panics
///
/// Always, once [`HANG_GUARD`] has passed.
pub fn sleep_until_killed() -> ! {
    std::thread::sleep(HANG_GUARD);
    panic!("not killed within {HANG_GUARD:?}: the parent is gone or hung");
}

/// The scheduler state of `pid`'s main thread (`R`, `S`, `D`, `Z`, ...),
/// `None` once it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The next number of a small deterministic pseudo-random sequence
/// (xorshift64), for picking kill points and batch sizes in tests.
pub fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Stdout of a run as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a run as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `pid` is a running process (neither gone nor a zombie).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| !stat[i + 1..].trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits (up to [`HANG_GUARD`]) until `pid` no longer runs. Returns whether it stopped.
pub fn wait_gone(pid: u32) -> bool {
    let start = Instant::now();
    while is_running(pid) {
        if start.elapsed() > HANG_GUARD {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[doc(hidden)]
pub use libtest_mimic;

/// The `main` of an integration test: registers each test under its name
/// (`name => function`, or just `function`): those in `per_method` once per
/// start method, those in `spawned` for spawn and forkserver only (each with
/// the method's name appended: `name_fork`, ...), those in `once` once; then
/// runs them with [`run_trials`] after `shmproc::init()`.
///
/// ```ignore
/// shmproc_tests::trials! {
///     per_method { queue_children_put_parent_gets => children_put_parent_gets }
///     once { zombie_holder_is_taken_over }
/// }
/// ```
#[macro_export]
macro_rules! trials {
    (
        $(per_method { $($pm:ident $(=> $pmf:ident)?),* $(,)? })?
        $(spawned { $($sp:ident $(=> $spf:ident)?),* $(,)? })?
        $(once { $($one:ident $(=> $onef:ident)?),* $(,)? })?
    ) => {
        fn main() {
            shmproc::init();
            let mut tests: Vec<$crate::libtest_mimic::Trial> = Vec::new();
            for m in $crate::METHODS {
                let _ = m;
                $($(
                    tests.push($crate::libtest_mimic::Trial::test(
                        format!("{}_{m}", stringify!($pm)),
                        move || $crate::trials!(@pick $pm $($pmf)?)(m),
                    ));
                )*)?
            }
            for m in [$crate::StartMethod::Spawn, $crate::StartMethod::ForkServer] {
                let _ = m;
                $($(
                    tests.push($crate::libtest_mimic::Trial::test(
                        format!("{}_{m}", stringify!($sp)),
                        move || $crate::trials!(@pick $sp $($spf)?)(m),
                    ));
                )*)?
            }
            $($(
                tests.push($crate::libtest_mimic::Trial::test(
                    stringify!($one),
                    $crate::trials!(@pick $one $($onef)?),
                ));
            )*)?
            $crate::run_trials(tests)
        }
    };
    (@pick $name:ident $f:ident) => { $f };
    (@pick $name:ident) => { $name };
}
