use super::List;
use crate::store::tests::die_after;

#[test]
fn the_whole_interface() {
    let l = List::<i32>::new().expect("create");
    assert!(l.is_empty().unwrap());
    l.push(&1).unwrap();
    l.append(&2).unwrap();
    l.extend(&[3, 4, 5]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3, 4, 5]);
    l.insert(0, &0).unwrap();
    l.insert(100, &6).unwrap();
    assert_eq!(l.get(6).unwrap(), 6);
    let e = l.get(7).unwrap_err();
    assert_eq!(e.to_string(), "list index 7 out of range for a list of 7");
    l.set(1, &10).unwrap();
    assert!(l.set(70, &10).is_err());
    assert_eq!(l.pop().unwrap(), Some(6));
    assert_eq!(l.pop_at(0).unwrap(), 0);
    assert_eq!(l.to_vec().unwrap(), [10, 2, 3, 4, 5]);
    l.remove(&3).unwrap();
    assert!(l.remove(&3).is_err());
    assert_eq!(l.index(&4).unwrap(), 2);
    assert!(l.contains(&5).unwrap());
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), [5, 4, 2, 10]);
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), [2, 4, 5, 10]);
    assert_eq!(l.range(1..3).unwrap(), [4, 5]);
    assert_eq!(l.range(2..).unwrap(), [5, 10]);
    assert_eq!(l.range(3..100).unwrap(), [10]);
    l.set_range(1..3, &[7, 7, 7]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [2, 7, 7, 7, 10]);
    l.modify(0, |x| *x *= 21).unwrap();
    assert_eq!(l.get(0).unwrap(), 42);
    assert_eq!(l.len().unwrap(), 5);
    l.clear().unwrap();
    assert_eq!(l.pop().unwrap(), None);
    assert!(l.is_empty().unwrap());
    for i in 0..1000 {
        l.push(&i).unwrap();
    }
    assert_eq!(l.to_vec().unwrap().into_iter().sum::<i32>(), 499_500);
}

#[test]
#[cfg_attr(miri, ignore = "hundreds of stores; slow under Miri")]
fn a_writer_dying_anywhere_leaves_before_or_after() {
    type Op = fn(&List<String>);
    let ops: [(&str, Op); 8] = [
        ("push", |l| l.push(&"x".into()).unwrap()),
        ("push past capacity", |l| l.extend(&vec!["y".to_owned(); 20]).unwrap()),
        ("set", |l| l.set(2, &"s".into()).unwrap()),
        ("insert", |l| l.insert(1, &"i".into()).unwrap()),
        ("pop", |l| drop(l.pop().unwrap())),
        ("remove", |l| l.remove(&"v3".into()).unwrap()),
        ("sort", |l| {
            l.sort_by(|a, b| b.cmp(a)).unwrap();
        }),
        ("clear", |l| l.clear().unwrap()),
    ];
    for (name, op) in ops {
        for n in 0.. {
            let l = List::<String>::new().unwrap();
            let start: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
            l.extend(&start).unwrap();
            let model = List::<String>::new().unwrap();
            model.extend(&start).unwrap();
            op(&model);
            let after = model.to_vec().unwrap();
            let died = die_after(n, || op(&l));
            let now = l.to_vec().unwrap();
            if !died {
                assert_eq!(now, after, "{name}");
                break;
            }
            assert!(now == start || now == after, "{name} died after {n} writes: {now:?}");
            l.push(&"z".into()).unwrap();
            assert_eq!(l.get(l.len().unwrap() - 1).unwrap(), "z");
        }
    }
}

/// Words scribbled anywhere in the store: every operation answers, with a
/// value or an error, and none panics or hangs.
#[test]
#[cfg_attr(miri, ignore = "many stores; slow under Miri")]
fn scribbled_words_are_errors_not_crashes() {
    use crate::store::layout::{HEAP_END_OFF, ROOT_OFF};
    let mut seed = 0x1234_5678_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rounds = std::env::var("SCRIBBLE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(150);
    let mut errors = 0;
    for _ in 0..rounds {
        let l = List::<String>::new().unwrap();
        l.extend(&(0..60).map(|i| format!("item {i}")).collect::<Vec<_>>())
            .unwrap();
        let end = l.store.load(HEAP_END_OFF).unwrap();
        for _ in 0..3 {
            let off = (ROOT_OFF + next() % (end - ROOT_OFF)) & !7;
            let v = match next() % 4 {
                0 => next(),
                1 => next() % 128,
                2 => off.wrapping_add(next() % 512) & !7,
                _ => u64::MAX,
            };
            l.store
                .word(off)
                .unwrap()
                .store(v, crate::sync::atomic::Ordering::Relaxed);
        }
        let r = std::panic::catch_unwind(|| {
            let mut errs = 0;
            for i in 0..70 {
                errs += usize::from(l.get(i).is_err());
            }
            errs += usize::from(l.to_vec().is_err());
            errs += usize::from(l.push(&"p".into()).is_err());
            errs += usize::from(l.insert(3, &"i".into()).is_err());
            errs += usize::from(l.sort().is_err());
            errs += usize::from(l.reverse().is_err());
            errs += usize::from(l.pop().is_err());
            errs += usize::from(l.remove(&"item 5".into()).is_err());
            errs += usize::from(l.clear().is_err());
            errs += usize::from(l.push(&"after".into()).is_err());
            errs
        });
        errors += r.expect("no operation panics on a scribbled store");
    }
    assert!(errors > 0, "some scribbles were noticed");
}
