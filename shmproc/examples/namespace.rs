//! S16: a producer sets `ns.value` and an `Event`; the consumer reads the
//! attribute before (a clear "no such attribute" error) and after (the
//! value). A list stored in the namespace and changed after reading does
//! not change the namespace until it is stored again.
//!
//! Run: `cargo run --example namespace`

use shmproc::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Shared {
    ns: Namespace,
    ready: Event,
    asked: Event,
}

fn producer(s: Shared) -> Result<(), shmproc::Error> {
    // Wait until the consumer has tried once (a handshake, not a sleep).
    s.asked.wait();
    s.ns.set("value", &42_i64)?;
    s.ready.set();
    Ok(())
}

fn consumer(s: Shared) -> Result<(), shmproc::Error> {
    match s.ns.get::<i64>("value") {
        Ok(v) => println!("before: unexpectedly {v}"),
        Err(e) => println!("before: {e}"),
    }
    s.asked.set();
    s.ready.wait();
    println!("after: {}", s.ns.get::<i64>("value")?);
    Ok(())
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let manager = Manager::new()?;
    let ns = manager.namespace()?;
    let (ready, asked) = (manager.event()?, manager.event()?);
    let shared = || Shared {
        ns: ns.clone(),
        ready: ready.clone(),
        asked: asked.clone(),
    };
    let c = Process::new(consumer, shared());
    let p = Process::new(producer, shared());
    c.start()?;
    p.start()?;
    c.join()?;
    p.join()?;

    ns.set("items", &vec![1, 2, 3])?;
    let mut items: Vec<i32> = ns.get("items")?;
    items.push(4);
    println!("changed copy: {items:?}, namespace: {:?}", ns.get::<Vec<i32>>("items")?);
    ns.set("items", &items)?;
    println!("stored again: {:?}", ns.get::<Vec<i32>>("items")?);
    ns.modify("items", |v: &mut Vec<i32>| v.push(5))?;
    println!("changed in place: {:?}", ns.get::<Vec<i32>>("items")?);
    Ok(())
}
