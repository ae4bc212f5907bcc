"""Peers of shmproc::Queue and shmproc::Pipe: Python's multiprocessing.Queue and Pipe.

Queue: one forked producer process puts ITEMS small ints (0, 1, 2, ...) on a
multiprocessing.Queue, this process gets them all and checks their sum. Both
meet at a start line (an Event) first, so process start is not counted; a
sample runs from the start line to the last get. Reported as items per
second, over SAMPLES runs.

Pipe: a forked child echoes every message of a duplex multiprocessing.Pipe
(`recv_bytes` then `send_bytes`); this process sends 8 bytes and waits for
them back, timing each round trip with `perf_counter_ns`, TRIPS times after
WARMUP untimed ones.

The two processes are pinned one per CPU when there are two, as on the Rust
side. Prints one line of flat JSON:

    {"queue": items/s median, "queue_p10": ..., "queue_p90": ..., "queue_n": S,
     "pipe": seconds median, "pipe_p10", "pipe_p90", "pipe_p99", "pipe_p999",
     "pipe_n": TRIPS, "python": "3.11.7"}

Run by benches/src/peers/mp_queue_pipe.rs; counts come from its arguments.
"""

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import struct
import time


def cpus():
    """The first two CPUs allowed, or None for each when there are fewer."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def producer(q, items, start, cpu):
    pin(cpu)
    start.wait()
    for i in range(items):
        q.put(i)


def queue_run(ctx, items, child_cpu):
    q = ctx.Queue()
    start = ctx.Event()
    p = ctx.Process(target=producer, args=(q, items, start, child_cpu))
    p.start()
    t0 = time.perf_counter()
    start.set()
    total = 0
    for _ in range(items):
        total += q.get()
    dt = time.perf_counter() - t0
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"producer exited with {p.exitcode}")
    if total != items * (items - 1) // 2:
        raise SystemExit(f"lost items: sum {total}")
    return items / dt


def echo(conn, cpu):
    pin(cpu)
    while True:
        msg = conn.recv_bytes()
        if not msg:
            return
        conn.send_bytes(msg)


def pipe_trips(ctx, trips, warmup, child_cpu):
    mine, theirs = ctx.Pipe(duplex=True)
    p = ctx.Process(target=echo, args=(theirs, child_cpu))
    p.start()
    samples = []
    for i in range(warmup + trips):
        msg = struct.pack("<Q", i + 1)
        t0 = time.perf_counter_ns()
        mine.send_bytes(msg)
        back = mine.recv_bytes()
        dt = time.perf_counter_ns() - t0
        if back != msg:
            raise SystemExit("the echo differs")
        if i >= warmup:
            samples.append(dt * 1e-9)
    mine.send_bytes(b"")
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"echo child exited with {p.exitcode}")
    return sorted(samples)


def permille(sorted_samples, pm):
    """Nearest rank, as the Rust side's `nearest_rank`."""
    return sorted_samples[(len(sorted_samples) - 1) * pm // 1000]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=100_000, help="items per Queue run")
    ap.add_argument("--samples", type=int, default=7, help="Queue runs")
    ap.add_argument("--trips", type=int, default=2000, help="timed Pipe round trips")
    ap.add_argument("--warmup", type=int, default=100, help="untimed Pipe round trips")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    parent_cpu, child_cpu = cpus()
    pin(parent_cpu)
    queue_run(ctx, max(args.items // 10, 1), child_cpu)
    rates = sorted(queue_run(ctx, args.items, child_cpu) for _ in range(max(args.samples, 1)))
    trips = pipe_trips(ctx, max(args.trips, 1), args.warmup, child_cpu)
    print(
        json.dumps(
            {
                "queue": statistics.median(rates),
                "queue_p10": permille(rates, 100),
                "queue_p90": permille(rates, 900),
                "queue_n": len(rates),
                "pipe": permille(trips, 500),
                "pipe_p10": permille(trips, 100),
                "pipe_p90": permille(trips, 900),
                "pipe_p99": permille(trips, 990),
                "pipe_p999": permille(trips, 999),
                "pipe_n": len(trips),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
