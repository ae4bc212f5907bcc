use std::collections::HashMap;

use super::Dict;
use crate::Dynamic;
use crate::store::tests::die_after;

#[test]
fn the_whole_interface() {
    let d = Dict::<String, i64>::new().expect("create");
    assert!(d.is_empty().unwrap());
    d.set(&"a".into(), &1).unwrap();
    assert_eq!(d.insert(&"a".into(), &2).unwrap(), Some(1));
    assert_eq!(d.get(&"a".into()).unwrap(), Some(2));
    assert_eq!(d.get(&"b".into()).unwrap(), None);
    let e = d.get_item(&"b".into()).unwrap_err();
    assert_eq!(e.to_string(), "no such key: \"b\"");
    assert!(d.contains_key(&"a".into()).unwrap());
    assert_eq!(d.setdefault(&"b".into(), 5).unwrap(), 5);
    assert_eq!(d.setdefault(&"b".into(), 6).unwrap(), 5);
    assert_eq!(d.len().unwrap(), 2);
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    let mut values = d.values().unwrap();
    values.sort_unstable();
    assert_eq!(values, [2, 5]);
    assert_eq!(d.pop(&"a".into()).unwrap(), 2);
    assert!(d.pop(&"a".into()).is_err());
    assert_eq!(d.remove(&"zz".into()).unwrap(), None);
    let more: Vec<(String, i64)> = (0..10).map(|i| (format!("k{i}"), i)).collect();
    d.update(more.iter().map(|(k, v)| (k, v))).unwrap();
    assert_eq!(d.len().unwrap(), 11);
    d.modify(&"k3".into(), |v| *v.as_mut().unwrap() += 100).unwrap();
    d.modify(&"k4".into(), |v| *v = None).unwrap();
    let m: HashMap<String, i64> = d.to_hashmap().unwrap();
    assert_eq!(m["k3"], 103);
    assert!(!m.contains_key("k4"));
    assert_eq!(d.items().unwrap().len(), 10);
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    assert_eq!(d.items().unwrap(), []);
    d.set(&"again".into(), &1).unwrap();
    assert_eq!(d.len().unwrap(), 1);
}

#[test]
#[cfg_attr(miri, ignore = "grows the segment: the Miri stand-in cannot")]
fn grows_from_empty_to_many_and_reuses_space() {
    let d = Dict::<u64, u64>::new().expect("create");
    for i in 0..20_000 {
        d.set(&i, &(i * 2)).unwrap();
    }
    for i in (0..20_000).step_by(2) {
        assert_eq!(d.remove(&i).unwrap(), Some(i * 2));
    }
    assert_eq!(d.len().unwrap(), 10_000);
    for i in 0..20_000 {
        assert_eq!(d.get(&i).unwrap(), (i % 2 == 1).then_some(i * 2), "key {i}");
    }
    let big: Vec<(u64, u64)> = (0..5000).map(|i| (i + 1_000_000, i)).collect();
    d.update(big.iter().map(|(k, v)| (k, v))).unwrap();
    assert_eq!(d.len().unwrap(), 15_000);
    assert_eq!(d.get(&1_004_999).unwrap(), Some(4999));
}

#[test]
fn mixed_keys_and_values() {
    let d = Dict::<Dynamic, Dynamic>::new().expect("create");
    d.set(&1.into(), &"1".into()).unwrap();
    d.set(&"2".into(), &2.into()).unwrap();
    d.set(&0.25.into(), &Dynamic::None).unwrap();
    assert_eq!(d.get(&1.into()).unwrap(), Some("1".into()));
    assert_eq!(d.get(&0.25.into()).unwrap(), Some(Dynamic::None));
    assert_eq!(d.get(&2.into()).unwrap(), None);
}

#[test]
#[cfg_attr(miri, ignore = "grows the segment: the Miri stand-in cannot")]
fn a_value_too_large_is_refused_and_the_dict_goes_on() {
    let d = Dict::<u8, Vec<u8>>::new().expect("create");
    d.set(&1, &vec![7; 10]).unwrap();
    // Large but allowed: a block of its own.
    d.set(&2, &vec![9; 3 << 20]).unwrap();
    assert_eq!(d.get(&2).unwrap().map(|v| v.len()), Some(3 << 20));
    assert_eq!(d.get(&1).unwrap(), Some(vec![7; 10]));
}

/// Kills a writer (in simulation) after every possible number of logged
/// writes of each operation and checks the dict is the before or the after
/// state.
#[test]
#[cfg_attr(miri, ignore = "hundreds of stores; slow under Miri")]
fn a_writer_dying_anywhere_leaves_before_or_after() {
    type Op = fn(&Dict<u32, String>);
    let ops: [(&str, Op); 6] = [
        ("set new", |d| d.set(&1000, &"x".into()).unwrap()),
        ("set existing", |d| d.set(&3, &"changed".into()).unwrap()),
        ("remove", |d| drop(d.remove(&4).unwrap())),
        ("update bulk", |d| {
            let items: Vec<(u32, String)> = (0..1500).map(|i| (i, format!("u{i}"))).collect();
            d.update(items.iter().map(|(k, v)| (k, v))).unwrap();
        }),
        ("clear", |d| d.clear().unwrap()),
        ("grow", |d| {
            for i in 100..200 {
                d.set(&i, &"g".into()).unwrap();
            }
        }),
    ];
    for (name, op) in ops {
        for n in 0.. {
            let d = Dict::<u32, String>::new().unwrap();
            for i in 0..10 {
                d.set(&i, &format!("v{i}")).unwrap();
            }
            let before = sorted(&d);
            let model = Dict::<u32, String>::new().unwrap();
            model.update(before.iter().map(|(k, v)| (k, v))).unwrap();
            let died = die_after(n, || op(&d));
            let now = sorted(&d);
            op(&model);
            let after = sorted(&model);
            if !died {
                assert_eq!(now, after, "{name}: finished");
                break;
            }
            // "grow" is many operations: any prefix of them is fine.
            if name == "grow" {
                assert!(now.len() >= 10 && now.len() <= 110, "{name} at {n}");
            } else {
                assert!(
                    now == before || now == after,
                    "{name} died after {n} writes: in between"
                );
            }
            // The dict goes on working.
            d.set(&7777, &"z".into()).unwrap();
            assert_eq!(d.get(&7777).unwrap().as_deref(), Some("z"));
        }
    }
}

fn sorted(d: &Dict<u32, String>) -> Vec<(u32, String)> {
    let mut v = d.items().unwrap();
    v.sort();
    v
}

/// Writers and readers on threads at once: every read sees a whole entry
/// (an entry's parts agree), never a torn one.
#[test]
fn concurrent_readers_see_whole_entries() {
    let d = Dict::<u64, (u64, u64, Vec<u64>)>::new().expect("create");
    let rounds = if cfg!(miri) { 40 } else { 1500 };
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let d = d.clone();
            s.spawn(move || {
                for r in 0..rounds {
                    let k = (r * 7 + w) % 64;
                    let len = (r % 9) as usize;
                    d.set(&k, &(k, r, vec![r * k; len])).unwrap();
                    if r % 100 == 99 {
                        d.remove(&k).unwrap();
                    }
                }
            });
        }
        for _ in 0..2 {
            let d = d.clone();
            s.spawn(move || {
                for n in 0..rounds {
                    if let Some((k, r, v)) = d.get(&(n % 64)).unwrap() {
                        assert_eq!(k, n % 64);
                        assert!(v.iter().all(|&x| x == r * k), "torn entry {k}: {r} {v:?}");
                    }
                    if n % 100 == 0 {
                        for (k, (k2, r, v)) in d.items().unwrap() {
                            assert_eq!(k, k2);
                            assert!(v.iter().all(|&x| x == r * k));
                        }
                    }
                }
            });
        }
    });
}

/// Words scribbled anywhere in the store (a buggy peer): every operation
/// answers, with a value or an error, and none panics or hangs.
#[test]
#[cfg_attr(miri, ignore = "many stores; slow under Miri")]
fn scribbled_words_are_errors_not_crashes() {
    use crate::store::layout::{HEAP_END_OFF, ROOT_OFF};
    let mut seed = 0x9E37_79B9_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut errors = 0;
    let rounds = std::env::var("SCRIBBLE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(150);
    for _ in 0..rounds {
        let d = Dict::<u64, String>::new().unwrap();
        for k in 0..100 {
            d.set(&k, &format!("value {k}")).unwrap();
        }
        let end = d.store.load(HEAP_END_OFF).unwrap();
        for _ in 0..4 {
            let off = (ROOT_OFF + next() % (end - ROOT_OFF)) & !7;
            let v = match next() % 4 {
                0 => next(),
                1 => next() % 64,
                2 => off.wrapping_add(next() % 512) & !7,
                _ => u64::MAX,
            };
            d.store
                .word(off)
                .unwrap()
                .store(v, crate::sync::atomic::Ordering::Relaxed);
        }
        let r = std::panic::catch_unwind(|| {
            let mut errs = 0;
            for k in 0..110 {
                errs += usize::from(d.get(&k).is_err());
            }
            errs += usize::from(d.items().is_err());
            errs += usize::from(d.set(&5, &"again".into()).is_err());
            errs += usize::from(d.remove(&6).is_err());
            let more: Vec<(u64, String)> = (200..300).map(|k| (k, "m".into())).collect();
            errs += usize::from(d.update(more.iter().map(|(k, v)| (k, v))).is_err());
            errs += usize::from(d.clear().is_err());
            errs += usize::from(d.set(&1, &"after".into()).is_err());
            errs
        });
        errors += r.expect("no operation panics on a scribbled store");
    }
    assert!(errors > 0, "some scribbles were noticed");
}

/// A value that refuses to serialise when it says so.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Picky(bool);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 {
            s.serialize_bool(true)
        } else {
            Err(serde::ser::Error::custom("this one will not"))
        }
    }
}

#[test]
fn a_value_that_does_not_serialise_is_an_error_and_nothing_is_lost() {
    let d = Dict::<u8, Picky>::new().expect("create");
    d.set(&1, &Picky(true)).unwrap();
    let e = d.set(&1, &Picky(false)).unwrap_err();
    assert!(
        matches!(e, crate::ManagerError::Serialization { what: "value", .. }),
        "{e}"
    );
    assert_eq!(d.get(&1).unwrap(), Some(Picky(true)), "the old value stays");
    let e = d.modify(&1, |v| *v = Some(Picky(false))).unwrap_err();
    assert!(
        matches!(e, crate::ManagerError::Serialization { what: "value", .. }),
        "{e}"
    );
    assert_eq!(d.get(&1).unwrap(), Some(Picky(true)), "a failed modify changes nothing");
    d.set(&2, &Picky(true)).unwrap();
    assert_eq!(d.len().unwrap(), 2);
}
