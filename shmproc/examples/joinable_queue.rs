//! S10: `cpu_count() * 2` consumers take tasks `a * b` from a
//! `JoinableQueue`, mark each done and put the result on a result `Queue`;
//! one poison pill per consumer; the parent waits with `join()`.

use serde::{Deserialize, Serialize};
use shmproc::prelude::*;

#[derive(Serialize, Deserialize, Debug)]
enum Task {
    Multiply(i64, i64),
    /// The poison pill: the consumer that takes it exits.
    Stop,
}

fn consumer((tasks, results): (JoinableQueue<Task>, Queue<(i64, i64, i64)>)) {
    let me = current_process();
    let name = me.name();
    loop {
        match tasks.get().expect("the parent keeps the queue open") {
            Task::Multiply(a, b) => {
                results.put((a, b, a * b)).expect("room");
                tasks.task_done().expect("one per task");
            }
            Task::Stop => {
                println!("{name}: exiting");
                tasks.task_done().expect("one per task");
                return;
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    let tasks = JoinableQueue::new(0)?;
    let results = Queue::new(0)?;
    let n = cpu_count() * 2;
    println!("creating {n} consumers");
    let consumers: Vec<Process> = (0..n)
        .map(|_| Process::new(consumer, (tasks.clone(), results.clone())))
        .collect();
    for c in &consumers {
        c.start()?;
    }
    for i in 0..10 {
        tasks.put(Task::Multiply(i, i))?;
    }
    for _ in 0..n {
        tasks.put(Task::Stop)?;
    }
    // Every task, pills included, is marked done before join returns.
    tasks.join();
    println!("all tasks done");
    for _ in 0..10 {
        let (a, b, r) = results.get()?;
        println!("result: {a} * {b} = {r}");
    }
    for c in &consumers {
        c.join()?;
        println!("{} exited with {:?}", c.name(), c.exitcode());
    }
    Ok(())
}
