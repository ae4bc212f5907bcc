//! S17: a user type with a field `x = 10` and a method `change()` that adds
//! 200, registered with a manager; a child calls `change()` through its
//! handle, and the parent reads 210.
//!
//! Run: `cargo run --example custom_manager`

use shmproc::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct MathClass {
    x: i64,
}

impl MathClass {
    fn change(&mut self) {
        self.x += 200;
    }

    fn scaled(&self, k: i64) -> i64 {
        self.x * k
    }

    fn divided(&self, by: i64) -> Result<i64, String> {
        self.x
            .checked_div(by)
            .ok_or_else(|| format!("{} / {by}: division by zero", self.x))
    }
}

shmproc::served! {
    impl MathClass as MathHandle {
        attrs { x: i64 }
        fn change(&mut self);
        fn scaled(&self, k: i64) -> i64;
        fallible {
            fn divided(&self, by: i64) -> i64;
        }
    }
}

fn child(math: Proxy<MathClass>) -> Result<(), shmproc::Error> {
    math.change()?;
    println!("child: scaled(2) = {}", math.scaled(2)?);
    Ok(())
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let manager = Manager::builder().register::<MathClass>().start()?;
    let math = manager.create(MathClass { x: 10 })?;
    println!("x before: {}", math.getattr::<i64>("x")?);
    let p = Process::new(child, math.clone());
    p.start()?;
    p.join()?;
    println!("x after: {}", math.getattr::<i64>("x")?);
    math.setattr("x", &7)?;
    println!("x set by the parent: {}", math.copy()?.x);
    println!("error: {}", math.divided(0).unwrap_err());
    println!("error: {}", math.call::<_, ()>("no_such_method", ()).unwrap_err());
    Ok(())
}
