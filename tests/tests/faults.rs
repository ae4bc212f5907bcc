//! Fault tests: processes killed with SIGKILL at random points while they
//! start, and a fork server killed while starts are in flight. Nothing may
//! hang; every outcome is an exit code or a clear error.
//!
//! Small in CI; `SHM_STRESS=long` runs ten times more rounds.

use std::time::Duration;

use shmproc::{Process, ProcessError, StartMethod};
use shmproc_tests::{check, next_random, wait_gone};

type Result = shmproc_tests::TestResult;

fn rounds(n: usize) -> usize {
    if std::env::var("SHM_STRESS").as_deref() == Ok("long") {
        n * 10
    } else {
        n
    }
}

fn forever(_: ()) {
    shmproc_tests::sleep_until_killed();
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn child_killed_at_random_points(m: StartMethod) -> Result {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..rounds(30) {
        let p = Process::new(forever, ()).with_start_method(m);
        p.start()?;
        // From "at once" (still bootstrapping) to well into its target.
        let delay = next_random(&mut seed) % 3000;
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        p.kill()?;
        let code = p.join();
        check(matches!(code, Ok(-9)), format!("round {i} ({delay} us): {code:?}"))?;
    }
    Ok(())
}

fn fork_server_killed_while_starting() -> Result {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..rounds(10) {
        let server = shmproc::forkserver_pid().ok_or("no fork server")?;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(next_random(&mut { seed }) % 2000));
            shmproc::sys::kill_pid(server, 9);
        });
        // Starts race with the kill: each either runs (exit 7), or reports a
        // clear error; none may hang.
        for _ in 0..5 {
            let p = Process::new(exit_with, 7).with_start_method(StartMethod::ForkServer);
            match p.start() {
                Ok(()) => match p.join() {
                    Ok(7) | Err(ProcessError::StatusLost { .. }) => {}
                    other => return Err(format!("round {i}: join gave {other:?}").into()),
                },
                Err(ProcessError::StatusLost { .. } | ProcessError::Io { .. }) => {}
                Err(e) => return Err(format!("round {i}: start gave {e}").into()),
            }
        }
        killer.join().map_err(|_| "killer panicked")?;
        check(wait_gone(server), "old fork server still running")?;
        let _ = next_random(&mut seed);
    }
    // And the server comes back for good.
    let p = Process::new(exit_with, 7).with_start_method(StartMethod::ForkServer);
    p.start()?;
    check(p.join()? == 7, "after the storm")
}

shmproc_tests::trials! {
    per_method {
        child_killed_at_random_points,
    }
    once {
        fork_server_killed_while_starting,
    }
}
