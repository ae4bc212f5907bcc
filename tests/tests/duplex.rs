//! The duplex channel across real processes, under every start method:
//! request/answer order through the mailbox cell and the rings mixed, no
//! loss or duplicate when the sender is killed at random points, and a dead
//! peer reported instead of a hang.

use std::sync::atomic::Ordering::Release;

use shmproc::duplex::{self, Duplex};
use shmproc::{Process, RawValue, RecvError, SendError, StartMethod};
use shmproc_tests::{check, next_random, wait_flag};

type Result = shmproc_tests::TestResult;

/// Answers `3v + 1` to every `v` until the channel closes.
fn echo(mut end: Duplex<u64, u64>) -> std::result::Result<(), String> {
    loop {
        match end.recv() {
            Ok(v) => end.send(3 * v + 1).map_err(|e| e.to_string())?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Echoes forever (until killed).
fn echo_forever(mut end: Duplex<u64, u64>) {
    while let Ok(v) = end.recv() {
        if end.send(3 * v + 1).is_err() {
            return;
        }
    }
}

/// Sends 0, 1, 2, ... in bursts of random length until killed; `ready` goes
/// up once the first 1000 are out.
fn send_forever((mut end, ready, seed): (Duplex<u64, u64>, RawValue<u32>, u64)) {
    let mut s = seed;
    let mut i = 0u64;
    loop {
        let burst = next_random(&mut s) % 9;
        for _ in 0..burst {
            if end.send(i).is_err() {
                return;
            }
            i += 1;
            if i == 1000 {
                ready.store(1, Release);
            }
        }
        // Idle a little, as a client between requests: the next send may
        // use the mailbox cell again.
        for _ in 0..next_random(&mut s) % 64 {
            let _ = end.try_recv();
        }
    }
}

/// Round trips in bursts of 1 to 8 requests: single requests go through the
/// mailbox cell, bursts through the cell and the ring together.
fn requests_in_bursts(m: StartMethod) -> Result {
    let (mut me, peer) = duplex::channel::<u64, u64>(4)?;
    let p = Process::new(echo, peer).with_start_method(m);
    p.start()?;
    let mut s = 0x5eed_u64;
    let mut i = 0u64;
    while i < 50_000 {
        let burst = next_random(&mut s) % 8 + 1;
        for k in 0..burst {
            me.send(i + k).map_err(|e| e.to_string())?;
        }
        for k in 0..burst {
            let got = me.recv()?;
            check(got == 3 * (i + k) + 1, format!("request {} answered {got}", i + k))?;
        }
        i += burst;
    }
    me.close();
    check(p.join()? == 0, "the echo child failed")
}

/// A sender killed at random points: everything it published arrives once,
/// in order, then the end of the stream.
fn killed_sender_loses_nothing_published(m: StartMethod) -> Result {
    let mut seed = 0xdead_u64 ^ m as u64;
    for round in 0..4 {
        let (peer, mut me) = duplex::channel::<u64, u64>(8)?;
        let ready = RawValue::new(0u32)?;
        let p = Process::new(send_forever, (peer, ready.clone(), next_random(&mut seed))).with_start_method(m);
        p.start()?;
        let mut next = 0u64;
        while next < 1000 {
            let v = me.recv()?;
            check(v == next, format!("round {round}: got {v}, expected {next}"))?;
            next += 1;
        }
        wait_flag(&ready);
        // Let it run a random while, receiving, then kill it mid-flight.
        for _ in 0..next_random(&mut seed) % 5000 {
            let v = me.recv()?;
            check(v == next, format!("round {round}: got {v}, expected {next}"))?;
            next += 1;
        }
        p.kill()?;
        check(p.join()? == -9, "killed")?;
        loop {
            match me.recv() {
                Ok(v) => {
                    check(
                        v == next,
                        format!("round {round}: after the kill got {v}, expected {next}"),
                    )?;
                    next += 1;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(format!("round {round}: after the sender died: {e}").into()),
            }
        }
    }
    Ok(())
}

/// A peer killed while we wait for its answer, or for room: both calls
/// report the disconnection instead of hanging.
fn dead_peer_is_reported(m: StartMethod) -> Result {
    let (mut me, peer) = duplex::channel::<u64, u64>(2)?;
    let p = Process::new(echo_forever, peer).with_start_method(m);
    p.start()?;
    for i in 0..100 {
        me.send(i).map_err(|e| e.to_string())?;
        check(me.recv()? == 3 * i + 1, "echo")?;
    }
    p.kill()?;
    check(p.join()? == -9, "killed")?;
    // Nothing answers: a blocked receive learns the peer died.
    check(me.recv() == Err(RecvError::Disconnected), "recv after the peer died")?;
    // Sends land until cell and ring are full; then a blocked send learns it.
    let mut last = Ok(());
    for i in 0..10 {
        last = me.send(i);
        if last.is_err() {
            break;
        }
    }
    check(
        matches!(last, Err(SendError::Disconnected(_))),
        format!("send to a dead peer: {last:?}"),
    )
}

shmproc_tests::trials! {
    per_method {
        duplex_requests_in_bursts => requests_in_bursts,
        duplex_killed_sender_loses_nothing_published => killed_sender_loses_nothing_published,
        duplex_dead_peer_is_reported => dead_peer_is_reported,
    }
}
