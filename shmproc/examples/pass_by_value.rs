//! S4: a `Vec` passed to a child is a copy: the child's push does not show
//! in the parent. A shared `RawArray` passed the same way is shared: the
//! child's write does show.

use shmproc::prelude::*;

fn push_to_copy(mut v: Vec<i32>) {
    v.push(4);
    println!("child sees Vec {v:?}");
}

fn write_to_shared(a: RawArray<i32>) {
    a.set(0, 100).expect("index 0 exists");
    println!("child sees Array {:?}", a.to_vec());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let v = vec![1, 2, 3];
    let p = Process::new(push_to_copy, v.clone());
    p.start()?;
    p.join()?;
    println!("parent sees Vec {v:?}");

    let a = RawArray::from_slice(&[1, 2, 3])?;
    let p = Process::new(write_to_shared, a.clone());
    p.start()?;
    p.join()?;
    println!("parent sees Array {:?}", a.to_vec());
    Ok(())
}
