//! S5: a child sets a shared `f64` to 3.1415927 and negates every element of
//! a shared array holding 0..10; the parent prints both.

use shmproc::prelude::*;

#[allow(clippy::approx_constant, reason = "the scenario's number, not PI")]
fn f((n, a): (RawValue<f64>, RawArray<i32>)) {
    n.set(3.141_592_7);
    for i in 0..a.len() {
        let x = a.get(i).expect("in bounds");
        a.set(i, -x).expect("in bounds");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let num = RawValue::new(0.0f64)?;
    let arr = RawArray::from_slice(&(0..10).collect::<Vec<i32>>())?;
    let p = Process::new(f, (num.clone(), arr.clone()));
    p.start()?;
    p.join()?;
    println!("{}", num.get());
    println!("{:?}", arr.to_vec());
    Ok(())
}
