//! S15: ten processes write `d[i] = i * 2` into a manager dict; then a dict
//! and a list where a child writes keys of mixed types and reverses the list.
//!
//! Run: `cargo run --example manager_dict`

use shmproc::prelude::*;

fn store_double((d, i): (Dict<u32, u32>, u32)) -> Result<(), shmproc::Error> {
    d.set(&i, &(i * 2))?;
    Ok(())
}

/// Python's `f(d, l)`: `d[1] = '1'; d['2'] = 2; d[0.25] = None; l.reverse()`.
fn mixed((d, l): (Dict<Dynamic, Dynamic>, List<i64>)) -> Result<(), shmproc::Error> {
    d.set(&1.into(), &"1".into())?;
    d.set(&"2".into(), &2.into())?;
    d.set(&0.25.into(), &Dynamic::None)?;
    l.reverse()?;
    Ok(())
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let manager = Manager::new()?;

    let d = manager.dict::<u32, u32>()?;
    let procs: Vec<Process> = (0..10).map(|i| Process::new(store_double, (d.clone(), i))).collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    let mut items = d.items()?;
    items.sort_unstable();
    let shown: Vec<String> = items.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", shown.join(", "));

    let d = manager.dict::<Dynamic, Dynamic>()?;
    let l = manager.list::<i64>()?;
    l.extend(&(0..10).collect::<Vec<i64>>())?;
    let p = Process::new(mixed, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    let shown: Vec<String> = d.items()?.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let mut shown = shown;
    shown.sort();
    println!("mixed: {{{}}}", shown.join(", "));
    println!("list: {:?}", l.to_vec()?);
    Ok(())
}
