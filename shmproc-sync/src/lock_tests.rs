//! Tests of `Lock`: the owner-died rules, take-overs of words no live
//! holder wrote, and a holder killed in another process.

use super::*;
use crate::park::LIVENESS_SLICE;

#[test]
fn acquire_try_and_timeout() {
    let lock = Lock::new().expect("create");
    assert!(!lock.is_locked());
    let g = lock.acquire().expect("free");
    assert_eq!(lock.holder(), Some(std::process::id()));
    assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)));
    let d = Duration::from_millis(1);
    assert!(matches!(lock.acquire_timeout(d), Err(AcquireTimeoutError::Timeout(t)) if t == d));
    drop(g);
    assert!(!lock.is_locked());
    drop(lock.try_acquire().expect("free again"));
}

#[test]
fn a_dead_holder_is_reported_to_every_acquirer_until_recovered() {
    let lock = Lock::new().expect("create");
    // A holder that does not exist (pid_max is far below this).
    lock.raw().state.store(0x3fff_fff0, Relaxed);
    let err = lock.acquire().expect_err("the holder is dead");
    assert_eq!(err.pid, task_of_word(0x3fff_fff0));
    assert!(
        lock.is_inconsistent() && !lock.is_locked(),
        "released, still inconsistent"
    );
    assert_eq!(lock.acquire().expect_err("again"), err);
    assert!(matches!(lock.try_acquire(), Err(TryAcquireError::OwnerDied(e)) if e == err));
    assert!(matches!(
        lock.acquire_timeout(LIVENESS_SLICE),
        Err(AcquireTimeoutError::OwnerDied(_))
    ));
    drop(lock.recover());
    assert!(
        lock.acquire().is_err(),
        "a recover guard dropped unmarked keeps it inconsistent"
    );
    {
        let g = lock.recover();
        assert!(lock.is_locked());
        g.mark_consistent();
    }
    assert!(!lock.is_inconsistent() && !lock.is_locked());
    drop(lock.acquire().expect("consistent again"));
    drop(lock.recover()); // on a healthy lock: a plain take and release
    drop(lock.acquire().expect("still consistent"));
}

fn task_of_word(word: u32) -> u32 {
    crate::park::task_of(word & OWNER)
}

#[test]
fn garbage_is_recovered_by_a_timed_acquire() {
    let lock = Lock::new().expect("create");
    lock.raw().state.store(u32::MAX, Relaxed);
    assert!(matches!(
        lock.acquire_timeout(LIVENESS_SLICE * 3),
        Err(AcquireTimeoutError::OwnerDied(_))
    ));
}

/// The snippet compiles: `OwnerDied` goes through `?` into
/// `Box<dyn Error>` and into `shmproc_core::Error`.
#[test]
fn question_mark_works_into_boxed_and_library_errors() {
    use shmproc_core::RawValue;
    fn work((lock, n): (Lock, RawValue<u64>)) -> Result<(), Box<dyn std::error::Error>> {
        let _g = lock.acquire()?;
        n.set(n.get() + 1);
        Ok(())
    }
    fn work2((lock, n): (Lock, RawValue<u64>)) -> Result<(), shmproc_core::Error> {
        let _g = lock.acquire()?;
        n.set(n.get() + 1);
        Ok(())
    }
    let (lock, n) = (Lock::new().expect("lock"), RawValue::new(0u64).expect("value"));
    work((lock.clone(), n.clone())).expect("fine");
    work2((lock.clone(), n.clone())).expect("fine");
    assert_eq!(n.get(), 2);
    lock.raw().state.store(0x3fff_fff0, Relaxed);
    let e = work2((lock.clone(), n.clone())).expect_err("owner died");
    assert_eq!(e.kind(), shmproc_core::ErrorKind::OwnerDied);
    assert!(work((lock, n.clone())).is_err());
    assert_eq!(n.get(), 2, "no update under an inconsistent lock");
}

/// Runs this test binary again as an unrelated process that runs only
/// the test `name`, with `SHM_SYNC_CHILD` set to `arg`.
pub(crate) fn rerun(name: &str, arg: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("SHM_SYNC_CHILD", arg)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the test binary again")
}

/// In the re-run child only: takes the named lock and holds it until killed.
#[test]
fn child_takes_the_named_lock_and_hangs() {
    let Ok(name) = std::env::var("SHM_SYNC_CHILD") else {
        return;
    };
    let lock = Lock::open(&name).expect("the parent made it");
    std::mem::forget(lock.acquire().expect("free"));
    // Held until the parent kills us; bounded all the same.
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3);
}

#[test]
#[cfg_attr(miri, ignore = "starts a process, opens a named segment")]
fn a_killed_holder_process_gives_owner_died_until_recovered() {
    let name = format!("shmproc-sync-test-ownerdied-{}", std::process::id());
    let lock = Lock::create_named(&name).expect("create");
    let mut child = rerun("lock::tests::child_takes_the_named_lock_and_hangs", &name);
    let pid = child.id();
    let start = std::time::Instant::now();
    while lock.holder() != Some(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the child never took the lock"
        );
        assert!(child.try_wait().expect("wait").is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert_eq!(lock.acquire().expect_err("the holder was killed"), OwnerDied { pid });
    assert_eq!(lock.acquire().expect_err("still inconsistent"), OwnerDied { pid });
    lock.recover().mark_consistent();
    drop(lock.acquire().expect("recovered"));
    shmproc_core::Segment::unlink(&name).expect("unlink");
}

/// A process that never takes any lock: `sleep`, killed on drop.
pub(crate) struct Bystander(std::process::Child);

impl Bystander {
    pub(crate) fn start() -> Self {
        Self(
            std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("start sleep"),
        )
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The owner id `task` would write, and one with the wrong tag.
pub(crate) fn ids_of(task: u32) -> (u32, u32) {
    let start = shmproc_core::liveness::start_time(task).expect("a live task has a start time");
    let right = crate::park::owner_id(task, start);
    let mut wrong = right;
    let mut other = start;
    while wrong == right {
        other += 1;
        wrong = crate::park::owner_id(task, other);
    }
    (right, wrong)
}

/// A timed acquire of a lock whose word is `word` must end with the
/// lock taken from a non-holder: `OwnerDied`, not a timeout.
fn taken_over(word: u32, what: &str) {
    let lock = Lock::new().expect("create");
    lock.raw().scribble(word);
    // Generous: a non-holder is noticed after one slice; only a hang
    // (the bug) runs into this bound.
    match lock.acquire_timeout(LIVENESS_SLICE * 100) {
        Err(AcquireTimeoutError::OwnerDied(_)) => {}
        Ok(_) => panic!("{what}: taken as if free"),
        Err(AcquireTimeoutError::Timeout(_)) => panic!("{what}: {word:#x} was taken for a live holder"),
    }
    assert!(lock.is_inconsistent() && !lock.is_locked(), "{what}");
}

#[test]
#[cfg_attr(miri, ignore = "starts a process and reads /proc")]
fn a_word_naming_a_live_process_that_never_took_it_is_taken_over() {
    let bystander = Bystander::start();
    let pid = bystander.pid();
    let (right, wrong) = ids_of(pid);
    taken_over(pid, "a bare live pid");
    taken_over(pid | WAITERS, "a bare live pid with waiters");
    taken_over(wrong, "a live pid with another start tag");
    taken_over(wrong | WAITERS, "the same with waiters");
    let me = std::process::id();
    taken_over(me, "our own bare pid");
    taken_over(ids_of(me).1, "our own pid with another start tag");
    taken_over(shmproc_core::sys::getppid(), "our parent's bare pid");
    let free = Lock::new().expect("create");
    free.raw().scribble(WAITERS);
    assert!(
        free.acquire_timeout(LIVENESS_SLICE).is_ok(),
        "pid 0 with WAITERS is free"
    );
    taken_over(0x7fff_ffff, "every bit but WAITERS");

    // The check is not "always dead": the word that process would write
    // is a live holder.
    let lock = Lock::new().expect("create");
    lock.raw().scribble(right);
    assert!(matches!(
        lock.acquire_timeout(LIVENESS_SLICE * 3),
        Err(AcquireTimeoutError::Timeout(_))
    ));
    assert_eq!(lock.holder(), Some(pid));
    drop(bystander);
    // ... until it ends.
    assert!(matches!(
        lock.acquire_timeout(LIVENESS_SLICE * 100),
        Err(AcquireTimeoutError::OwnerDied(_))
    ));
}

#[test]
#[cfg_attr(miri, ignore = "starts a process and reads /proc")]
fn an_untimed_lock_does_not_hang_on_a_live_non_holder() {
    let bystander = Bystander::start();
    let lock = Lock::new().expect("create");
    lock.raw().scribble(bystander.pid() | WAITERS);
    let (tx, rx) = std::sync::mpsc::channel();
    let l = lock.clone();
    let t = std::thread::spawn(move || {
        let got = l.acquire().map(drop);
        let _ = tx.send(got.is_err());
    });
    let owner_died = rx
        .recv_timeout(LIVENESS_SLICE * 100)
        .expect("lock() hung on a word naming a live process that never took it");
    assert!(owner_died, "the take-over is reported as OwnerDied");
    t.join().expect("thread");
}

#[test]
fn owner_ids_keep_pid_and_waiters_apart() {
    for start in [0, 1, 2, 99, u64::MAX] {
        let id = crate::park::owner_id(0x3f_ffff, start);
        assert_eq!(crate::park::task_of(id), 0x3f_ffff);
        assert_eq!(id & WAITERS, 0);
        assert_ne!(id >> crate::park::TASK_BITS, 0, "the tag is never 0");
    }
    assert_ne!(
        shmproc_core::liveness::start_tag(100),
        shmproc_core::liveness::start_tag(101)
    );
}

#[test]
fn threads_exclude_each_other() {
    let lock = Lock::new().expect("create");
    let count = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (lock, count) = (lock.clone(), std::sync::Arc::clone(&count));
        handles.push(std::thread::spawn(move || {
            for _ in 0..1000 {
                let _g = lock.acquire().expect("nobody dies");
                let mut c = count.try_lock().expect("the shm lock excludes");
                *c += 1;
            }
        }));
    }
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(*count.lock().expect("lock"), 4000);
}
