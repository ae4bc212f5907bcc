//! S20: lifecycle logging to stderr at debug level. Each event (child
//! started, running its target, exiting with its code, and the parent's view
//! of start and exit) is one line carrying the process name and pid.

use shmproc::prelude::*;

fn work(n: u32) {
    tracing::info!("doing work item {n}");
}

fn main() -> Result<(), shmproc::ProcessError> {
    shmproc::init();
    shmproc::log_to_stderr(tracing::Level::DEBUG);
    let p = Process::new(work, 7);
    p.start()?;
    let code = p.join()?;
    tracing::info!("child finished with {code}");
    Ok(())
}
