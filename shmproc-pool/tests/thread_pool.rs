//! The thread pool: Python's `multiprocessing.dummy.Pool` interface, with
//! closures that capture. Every wait is bounded (`get_timeout`, or an
//! iterator that ends); nothing is ordered by sleeps.

use std::sync::Arc;
use std::time::Duration;

use shmproc_pool::{PoolApi, PoolError, TaskFailure, ThreadPool};

const BOUND: Duration = Duration::from_secs(60);

#[test]
fn the_interface_with_capturing_closures() -> Result<(), PoolError> {
    let p = ThreadPool::new(3)?;
    let offset = 7u64;
    assert_eq!(p.map(move |x: u64| x + offset, 0..5)?, [7, 8, 9, 10, 11]);
    assert_eq!(p.map_chunked(|x: u64| x * x, 0..1000, 9)?.len(), 1000);
    assert_eq!(p.starmap(|a: u64, b: u64| a * b, [(2, 3), (4, 5)])?, [6, 20]);
    assert_eq!(p.apply(|a: String| a.len(), ("four".to_owned(),))?, 4);
    let r = p.apply_async(|x: u64| x + 1, (41,))?;
    assert_eq!(r.get_timeout(BOUND)?, 42);
    assert!(r.ready() && r.successful() == Some(true));
    assert!(
        matches!(r.get(), Err(PoolError::Taken)),
        "a thread result is moved out once"
    );
    let ordered: Vec<u64> = p.imap(|x: u64| x * 2, 0..100)?.collect::<Result<_, _>>()?;
    assert_eq!(ordered, (0..100).map(|x| x * 2).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = p
        .imap_unordered_chunked(|x: u64| x * 2, 0..100, 7)?
        .collect::<Result<_, _>>()?;
    unordered.sort_unstable();
    assert_eq!(unordered, ordered);
    // An endless input: the window bounds what is read.
    let first: Vec<u64> = p.imap(|x: u64| x, 0..)?.take(100).collect::<Result<_, _>>()?;
    assert_eq!(first.len(), 100);
    assert_eq!(p.imap(|x: u64| x, 0..30)?.size_hint(), (30, Some(30)));
    // Callbacks get a copy; get still works.
    let (tx, rx) = std::sync::mpsc::channel();
    let r = p.map_async_then(|x: u64| x + 1, [1, 2], move |v| tx.send(v).expect("send"), |_| {})?;
    assert_eq!(rx.recv_timeout(BOUND).expect("callback"), [2, 3]);
    assert_eq!(r.get_timeout(BOUND)?, [2, 3]);
    assert!(p.finished() >= 5 + 1000 + 2 + 1 + 1 + 100 + 100 + 100 + 30 + 2);
    p.close();
    p.join()?;
    assert!(matches!(p.map(|x: u64| x, [1]), Err(PoolError::Closed)));
    Ok(())
}

#[test]
fn a_panicking_task_fails_alone() -> Result<(), PoolError> {
    let p = ThreadPool::new(2)?;
    let got: Vec<_> = p
        .imap(
            |x: u64| {
                assert!(x != 3, "no threes");
                x
            },
            0..6,
        )?
        .collect();
    for (i, r) in got.iter().enumerate() {
        match (i, r) {
            (3, Err(PoolError::Task(e))) => {
                assert!(
                    matches!(&e.failure, TaskFailure::Panicked(m) if m.contains("no threes")),
                    "{e}"
                );
                assert!(e.worker.starts_with("ThreadPoolWorker-"), "{e}");
            }
            (i, Ok(v)) => assert_eq!(*v, i as u64),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(p.map(|x: u64| 10 / x, [1, 0, 2]), Err(PoolError::Task(e)) if e.index == 1));
    Ok(())
}

#[test]
fn initializer_state_maxtasks_and_failures() -> Result<(), PoolError> {
    let inits = Arc::new(std::sync::Mutex::new(0usize));
    let counted = Arc::clone(&inits);
    let p = ThreadPool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .initializer(
            move |base: u64| {
                *counted.lock().expect("not poisoned") += 1;
                base
            },
            100,
        )
        .build()?;
    let got = p.map_chunked(|s: &mut u64, x: u64| *s + x, 0..12, 1)?;
    assert_eq!(got, (100..112).collect::<Vec<_>>());
    drop(p);
    // 2 at the start, and one per 3 tasks of a thread afterwards.
    let n = *inits.lock().expect("not poisoned");
    assert!(n >= 2 + 12 / 3 - 2, "{n} initializations");
    match ThreadPool::builder()
        .processes(2)
        .initializer(|(): ()| panic!("init refuses"), ())
        .build()
    {
        Err(PoolError::Initializer { cause, .. }) => assert!(cause.contains("init refuses")),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn bad_input_and_terminate() -> Result<(), PoolError> {
    assert!(matches!(ThreadPool::new(0), Err(PoolError::NoWorkers)));
    let p = ThreadPool::new(1)?;
    assert!(matches!(
        p.map_chunked(|x: u64| x, [1], 0),
        Err(PoolError::ZeroChunksize)
    ));
    assert!(matches!(p.join(), Err(PoolError::NotClosed)));
    // A running task is waited for; queued ones fail with Terminated.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let running = p.apply_async(
        move || {
            started_tx.send(()).expect("send");
            let _ = release_rx.lock().expect("lock").recv_timeout(BOUND);
            1u8
        },
        (),
    )?;
    started_rx.recv_timeout(BOUND).expect("the task started");
    let queued = p.apply_async(|| 2u8, ())?;
    std::thread::scope(|s| {
        s.spawn(|| p.terminate());
        // Terminate drops the queued task at once.
        assert!(matches!(queued.get_timeout(BOUND), Err(PoolError::Terminated)));
        release_tx.send(()).expect("send");
    });
    assert_eq!(running.get_timeout(BOUND)?, 1);
    assert!(matches!(p.map(|x: u64| x, [1]), Err(PoolError::Terminated)));
    Ok(())
}

fn square(x: u64) -> u64 {
    x * x
}

fn sum_of_squares(pool: &impl PoolApi<State = ()>) -> Result<u64, PoolError> {
    Ok(pool.map(square, 0..100)?.iter().sum())
}

#[test]
fn the_shared_trait_runs_on_threads() -> Result<(), PoolError> {
    let p = ThreadPool::new(2)?;
    assert_eq!(sum_of_squares(&p)?, (0..100).map(square).sum());
    let via_trait: Vec<u64> = PoolApi::imap(&p, square, 0..10)?.collect::<Result<_, _>>()?;
    assert_eq!(via_trait, (0..10).map(square).collect::<Vec<_>>());
    assert_eq!(PoolApi::apply_async(&p, square, (9,))?.get_timeout(BOUND)?, 81);
    Ok(())
}

/// An iterator whose exact length hint is wrong (safe code may lie).
struct Liar(std::ops::Range<u32>);

impl Iterator for Liar {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (3, Some(3))
    }
}

#[test]
fn results_in_place_are_dropped_once_on_failure_and_kept_on_success() -> Result<(), PoolError> {
    let p = ThreadPool::new(2)?;
    // Values that own memory: a failure drops those written, exactly once.
    let got = p.map_chunked(
        |x: u32| {
            assert!(x != 7, "seven");
            x.to_string()
        },
        0..20u32,
        3,
    );
    assert!(matches!(got, Err(PoolError::Task(e)) if e.index == 7));
    let ok = p.map_chunked(|x: u32| x.to_string(), 0..20u32, 3)?;
    assert_eq!(ok, (0..20).map(|x| x.to_string()).collect::<Vec<_>>());
    // An input whose length hint is wrong still maps every item.
    assert_eq!(
        p.map(|x: u32| x * 2, Liar(0..10))?,
        (0..10).map(|x| x * 2).collect::<Vec<_>>()
    );
    assert_eq!(p.map(|x: u32| x * 2, Liar(0..2))?, [0, 2]);
    Ok(())
}

/// A map of many chunks cuts them a few at a time (at most one more than
/// there are threads in flight): every result, in order, and a failure in
/// the middle still reports its index.
#[test]
fn a_map_of_many_chunks_cuts_them_as_they_run() -> Result<(), PoolError> {
    let p = ThreadPool::new(2)?;
    let out = p.map_chunked(|x: u64| x * 3, 0..10_000, 7)?;
    assert_eq!(out, (0..10_000).map(|x| x * 3).collect::<Vec<_>>());
    let failed = p.map_chunked(|x: u64| 1_000 / (x.abs_diff(5_000)), 0..10_000, 7);
    assert!(matches!(failed, Err(PoolError::Task(e)) if e.index == 5_000));
    Ok(())
}
