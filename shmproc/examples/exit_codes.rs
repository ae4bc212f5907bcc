//! S2: exit codes. Children that call `exit(1)`, return normally, return a
//! value, panic, and one the parent terminates while it sleeps give 1, 0, 0,
//! 1 and -15 (minus the signal number). The panic message reaches stderr
//! with the process name.

use std::time::Duration;

use shmproc::prelude::*;

fn exits_with_one(_: ()) {
    std::process::exit(1);
}

fn returns(_: ()) {}

fn returns_a_value(n: u64) -> u64 {
    n * 2
}

fn panics(_: ()) {
    panic!("this child panics on purpose");
}

fn sleeps(_: ()) {
    std::thread::sleep(Duration::from_secs(60));
}

fn main() -> Result<(), shmproc::ProcessError> {
    shmproc::init();
    let procs = [
        Process::new(exits_with_one, ()),
        Process::new(returns, ()),
        Process::new(returns_a_value, 21),
        Process::new(panics, ()),
        Process::new(sleeps, ()),
    ];
    for p in &procs {
        assert_eq!(p.exitcode(), None, "no exit code before start");
        p.start()?;
    }
    let sleeper = &procs[4];
    assert!(sleeper.is_alive());
    assert_eq!(sleeper.exitcode(), None, "no exit code while running");
    sleeper.terminate()?;
    for p in &procs {
        let code = p.join()?;
        println!("{}.exitcode = {code}", p.name());
    }
    Ok(())
}
