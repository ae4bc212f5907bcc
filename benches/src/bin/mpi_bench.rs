//! The MPI rows' measuring program, run by `mpirun -np 2` across two hosts
//! (network namespaces: `shmproc-mpi/scripts/two-hosts`) or on one node: one
//! rank prints one line of flat JSON. Across nodes:
//!
//! - `raw`: an 8-byte ping-pong written directly on the `mpi` crate
//!   (rank 1 sends, rank 0 answers), p50 of each round trip;
//! - `queue`: the same round trip through two `DistQueue`s, one owned by
//!   each rank (each side's put crosses to the other's node), measured in
//!   blocks alternating with the raw ones;
//! - `pool`: trivial tasks (`x + 1`) per second through a `DistPool` of 2
//!   workers per node, against `master`: rank 0 sending each task to rank
//!   1 and receiving its result, on the `mpi` crate.

use std::time::Instant;

use mpi::point_to_point::{Destination, Source};
use mpi::topology::Communicator;
use shmproc::mpi::World;

fn triv(x: u64) -> u64 {
    x + 1
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Both ranks on one node: a `DistQueue` round trip (shared memory, the
/// `mpi` feature on) against the same round trip through plain `Queue`s, in
/// alternating blocks. Prints `{"dist": p50, "plain": p50}`.
fn same_node(world: &mut World, n: usize) -> Result<(), shmproc::Error> {
    let rank = world.rank();
    let to_owner0 = world.queue::<u64>(0, 64)?;
    let to_owner1 = world.queue::<u64>(1, 64)?;
    // Plain queues, by a name both ranks derive from their parent (the
    // launcher's daemon on this node).
    let name = |k: u32| format!("shmproc-mpi-bench-{}-{k}", std::os::unix::process::parent_id());
    let (a, b) = if rank == 0 {
        let q = (
            shmproc::Queue::<u64>::create_named(&name(0), 64)?,
            shmproc::Queue::<u64>::create_named(&name(1), 64)?,
        );
        world.barrier();
        q
    } else {
        world.barrier();
        (
            shmproc::Queue::<u64>::open(&name(0))?,
            shmproc::Queue::<u64>::open(&name(1))?,
        )
    };
    world.barrier();
    if rank == 0 {
        let _ = shmproc::Segment::unlink(&name(0));
        let _ = shmproc::Segment::unlink(&name(1));
    }
    let blocks = 10;
    let per = n.div_ceil(blocks);
    let (mut dist, mut plain) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..blocks {
        for i in 0..per as u64 {
            if rank == 1 {
                let t = Instant::now();
                to_owner0.put(i)?;
                let _ = to_owner1.get()?;
                dist.push(t.elapsed().as_secs_f64());
            } else {
                let v = to_owner0.get()?;
                to_owner1.put(v + 1)?;
            }
        }
        world.barrier();
        for i in 0..per as u64 {
            if rank == 1 {
                let t = Instant::now();
                a.put(i)?;
                let _ = b.get()?;
                plain.push(t.elapsed().as_secs_f64());
            } else {
                let v = a.get()?;
                b.put(v + 1)?;
            }
        }
        world.barrier();
    }
    if rank == 1 {
        println!("{{\"dist\": {}, \"plain\": {}}}", p50(dist), p50(plain));
    }
    world.barrier();
    Ok(())
}

/// Raw and queue round trips across nodes (rank 1's samples), in
/// alternating blocks, so that a slow spell of the machine weighs on both
/// alike.
fn round_trips(world: &mut World, n: usize) -> Result<(Vec<f64>, Vec<f64>), shmproc::Error> {
    let rank = world.rank();
    let to_owner0 = world.queue::<u64>(0, 64)?;
    let to_owner1 = world.queue::<u64>(1, 64)?;
    let blocks = 10;
    let per = n.div_ceil(blocks);
    let mut raw_rtt = Vec::with_capacity(n);
    let mut q_rtt = Vec::with_capacity(n);
    for _ in 0..blocks {
        // Raw MPI, under the engine's lock (no other MPI call meanwhile).
        raw_rtt.extend(world.with_mpi(move |w| {
            let other = w.process_at_rank(1 - i32::try_from(rank).unwrap_or(0));
            let mut rtt = Vec::with_capacity(per);
            for _ in 0..per {
                if rank == 1 {
                    let t = Instant::now();
                    other.send(&7u64);
                    let (_, _) = other.receive::<u64>();
                    rtt.push(t.elapsed().as_secs_f64());
                } else {
                    let (v, _) = other.receive::<u64>();
                    other.send(&(v + 1));
                }
            }
            rtt
        }));
        world.barrier();
        for i in 0..per as u64 {
            if rank == 1 {
                let t = Instant::now();
                to_owner0.put(i)?;
                let _ = to_owner1.get()?;
                q_rtt.push(t.elapsed().as_secs_f64());
            } else {
                let v = to_owner0.get()?;
                to_owner1.put(v + 1)?;
            }
        }
        world.barrier();
    }
    Ok((raw_rtt, q_rtt))
}

fn main() -> Result<(), shmproc::Error> {
    shmproc::init();
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let mut world = World::init()?;
    let rank = world.rank();
    if world.size() != 2 {
        eprintln!("mpi_bench needs 2 ranks");
        return Ok(());
    }
    if world.nodes() == 1 {
        return same_node(&mut world, n);
    }
    let (raw_rtt, q_rtt) = round_trips(&mut world, n)?;
    world.barrier();
    let pool = world.pool(2)?;
    let tasks = n * 50;
    let mut pool_rate = 0.0;
    if rank == 0 {
        let t = Instant::now();
        let out = pool.map(triv, 0..tasks as u64)?;
        assert_eq!(out.len(), tasks);
        #[allow(clippy::cast_precision_loss, reason = "a count")]
        let r = tasks as f64 / t.elapsed().as_secs_f64();
        pool_rate = r;
    }
    world.barrier();
    // The MPI master/worker loop: one task per message each way.
    let jobs = n * 5;
    let report = world.with_mpi(move |w| {
        let other = w.process_at_rank(1 - i32::try_from(rank).unwrap_or(0));
        let mut master_rate = 0.0;
        if rank == 0 {
            let t = Instant::now();
            for i in 0..jobs as u64 {
                other.send(&i);
                let (r, _) = other.receive::<u64>();
                assert_eq!(r, i + 1);
            }
            other.send(&u64::MAX);
            #[allow(clippy::cast_precision_loss, reason = "a count")]
            let r = jobs as f64 / t.elapsed().as_secs_f64();
            master_rate = r;
        } else {
            loop {
                let (x, _) = other.receive::<u64>();
                if x == u64::MAX {
                    break;
                }
                other.send(&triv(x));
            }
        }
        if rank == 1 {
            // Hand rank 1's round trips to rank 0 for the report.
            other.send(&p50(raw_rtt));
            other.send(&p50(q_rtt));
            None
        } else {
            let (raw_p50, _) = other.receive::<f64>();
            let (queue_p50, _) = other.receive::<f64>();
            Some((raw_p50, queue_p50, master_rate))
        }
    });
    if let Some((raw_p50, queue_p50, master_rate)) = report {
        println!(
            "{{\"raw\": {raw_p50}, \"queue\": {queue_p50}, \"pool\": {pool_rate}, \"master\": {master_rate}, \"nodes\": {}}}",
            world.nodes()
        );
    }
    drop(pool);
    Ok(())
}
