use super::layout::{HEADS_OFF, HEAP, HEAP_END_OFF, LOG_LEN_OFF, ROOT_OFF};
use super::tx::{DIE_AFTER, Died};
use super::{Kind, Store, Tx};
use crate::sync::atomic::Ordering;

/// Runs `f` in a transaction that dies after `n` logged writes; true if it
/// died (false: it finished first).
pub(crate) fn die_after<R>(n: u32, f: impl FnOnce() -> R) -> bool {
    DIE_AFTER.with(|d| d.set(Some(n)));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    DIE_AFTER.with(|d| d.set(None));
    match r {
        Ok(_) => false,
        Err(p) if p.is::<Died>() => true,
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[test]
fn a_committed_change_stays_and_a_dropped_one_rolls_back() {
    let s = Store::create(Kind::Dict).expect("create");
    let mut tx = Tx::begin(&s).expect("begin");
    let b = tx.alloc(100, "test").expect("alloc");
    tx.publish();
    tx.set_root(0, b).expect("set");
    tx.commit().expect("commit");
    assert_eq!(s.load(ROOT_OFF).unwrap(), b);
    assert_eq!(s.seq().load(Ordering::Relaxed) % 2, 0);

    let end = s.load(HEAP_END_OFF).unwrap();
    let mut tx = Tx::begin(&s).expect("begin");
    let c = tx.alloc(5000, "test").expect("alloc");
    tx.publish();
    tx.set_root(0, c).expect("set");
    drop(tx);
    assert_eq!(s.load(ROOT_OFF).unwrap(), b, "rolled back");
    assert_eq!(s.load(HEAP_END_OFF).unwrap(), end, "the allocation is undone");
    assert_eq!(s.load(LOG_LEN_OFF).unwrap(), 0);
    assert_eq!(s.seq().load(Ordering::Relaxed) % 2, 0);
}

#[test]
fn a_dead_writer_is_rolled_back_by_the_next() {
    let s = Store::create(Kind::Dict).expect("create");
    let end = s.load(HEAP_END_OFF).unwrap();
    let died = die_after(2, || {
        let mut tx = Tx::begin(&s).expect("begin");
        let b = tx.alloc(64, "test").expect("alloc");
        tx.publish();
        tx.set_root(0, b).expect("set");
        tx.set_root(1, 7).expect("set");
        tx.commit()
    });
    assert!(died);
    assert_ne!(s.load(LOG_LEN_OFF).unwrap(), 0, "the log is left");
    assert_eq!(s.seq().load(Ordering::Relaxed) % 2, 1, "seq left odd");
    // A reader falls back to the lock, which repairs.
    let root = s.read(|s| s.load(ROOT_OFF)).expect("read");
    assert_eq!(root, 0);
    assert_eq!(s.load(HEAP_END_OFF).unwrap(), end);
    assert_eq!(s.load(LOG_LEN_OFF).unwrap(), 0);
}

#[test]
#[cfg_attr(miri, ignore = "grows the segment: the Miri stand-in cannot")]
fn freed_blocks_are_reused_and_the_heap_grows() {
    let s = Store::create(Kind::List).expect("create");
    let mut tx = Tx::begin(&s).expect("begin");
    let a = tx.alloc(40, "test").expect("alloc");
    tx.free(a);
    tx.commit().expect("commit");
    assert_eq!(s.load(HEADS_OFF + 8).unwrap(), a - 16, "on its class's list");
    let mut tx = Tx::begin(&s).expect("begin");
    assert_eq!(tx.alloc(33, "test").expect("alloc"), a, "reused");
    // Past the first length: the file grows.
    let big = tx.alloc(4 << 20, "test").expect("alloc");
    tx.write_fresh(big + (4 << 20) - 8, 5).expect("write at the end");
    tx.commit().expect("commit");
    assert!(s.seg.current_len().unwrap() as u64 >= big + (4 << 20));
    assert!(big >= HEAP);
}

#[test]
fn a_scribbled_log_or_offset_is_an_error_not_a_crash() {
    let s = Store::create(Kind::Dict).expect("create");
    s.word(LOG_LEN_OFF).unwrap().store(u64::MAX, Ordering::Relaxed);
    let e = Tx::begin(&s).err().expect("refused");
    assert!(e.to_string().contains("undo log"), "{e}");
    s.word(LOG_LEN_OFF).unwrap().store(0, Ordering::Relaxed);
    assert!(s.load(1 << 50).is_err());
    assert!(s.load(3).is_err());
    assert!(s.block_capacity(HEAP + 16).is_err(), "no block there yet");
}
