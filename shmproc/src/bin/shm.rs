//! The `shm` command: list the named shm segments of this user, and remove
//! those whose creator died.
//!
//! ```text
//! shm list     named segments: name, creator pid (alive or dead), kind, type, size
//! shm clean    remove the named segments whose creator is no longer running
//! ```

use std::process::ExitCode;

fn list() -> Result<(), shmproc::SegmentError> {
    let segs = shmproc::segment::list_named()?;
    if segs.is_empty() {
        println!("no named shm segments");
        return Ok(());
    }
    println!(
        "{:<40} {:>8} {:<6} {:<8} {:<24} {:>12}",
        "NAME", "CREATOR", "STATE", "KIND", "TYPE", "BYTES"
    );
    for s in segs {
        let state = if s.creator_alive { "alive" } else { "dead" };
        match &s.info {
            Ok(i) => println!(
                "{:<40} {:>8} {:<6} {:<8} {:<24} {:>12}",
                s.name,
                s.creator_pid,
                state,
                i.kind.name(),
                i.type_name,
                i.payload_len
            ),
            Err(e) => println!("{:<40} {:>8} {:<6} invalid: {e}", s.name, s.creator_pid, state),
        }
    }
    Ok(())
}

fn clean() -> Result<(), shmproc::SegmentError> {
    let swept = shmproc::segment::sweep()?;
    for s in &swept {
        println!("removed {} (creator {} is gone)", s.name, s.creator_pid);
    }
    println!("{} segment(s) removed", swept.len());
    Ok(())
}

fn main() -> ExitCode {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    let result = match cmd.as_str() {
        "list" => list(),
        "clean" => clean(),
        _ => {
            eprintln!("usage: shm list | shm clean");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
