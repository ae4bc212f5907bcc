//! S11: one child waits on an `Event` without a timeout, another with a 2 s
//! timeout; the parent sets the event after 3 s. The timed waiter reports
//! `false` after about 2 s, the other `true` after about 3 s.

use std::time::{Duration, Instant};

use shmproc::prelude::*;

fn wait_forever(e: Event) {
    let t = Instant::now();
    e.wait();
    println!(
        "waiter without timeout: {} after {:.1} s",
        e.is_set(),
        t.elapsed().as_secs_f64()
    );
}

fn wait_two_seconds(e: Event) {
    let t = Instant::now();
    let set = e.wait_timeout(Duration::from_secs(2));
    println!(
        "waiter with 2 s timeout: {set} after {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let start = Instant::now();
    let e = Event::new()?;
    let forever = Process::new(wait_forever, e.clone());
    let timed = Process::new(wait_two_seconds, e.clone());
    forever.start()?;
    timed.start()?;
    // The timed waiter gives up first; then the parent sets the event at 3 s.
    timed.join()?;
    std::thread::sleep(Duration::from_secs(3).saturating_sub(start.elapsed()));
    println!("parent sets the event at {:.1} s", start.elapsed().as_secs_f64());
    e.set();
    forever.join()?;
    Ok(())
}
