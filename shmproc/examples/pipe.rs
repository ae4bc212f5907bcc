//! S18: a producer sends three messages over a `Pipe` and closes its end;
//! the consumer polls and receives until the peer is closed.

use shmproc::prelude::*;

fn producer(mut conn: Connection) {
    for msg in ["hello", "from", "the producer"] {
        conn.send(msg).expect("the consumer is there");
        println!("sent: {msg}");
    }
    conn.close();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmproc::init();
    // One-way: the first end only receives, the second only sends.
    let (mut rx, tx) = Pipe::new(false)?;
    let p = Process::new(producer, tx);
    p.start()?;
    loop {
        rx.wait_readable()?;
        match rx.recv::<String>() {
            Ok(msg) => println!("received: {msg}"),
            Err(PipeError::Eof) => {
                println!("end of stream");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    p.join()?;
    Ok(())
}
