"""Peer for shm's locked-increment benchmark: Python's multiprocessing.Value.

PROCS forked children each do N times `with v.get_lock(): v.value += 1` on
one `Value('q', 0)`. As on the Rust side, each child pins itself to a CPU
of its own (when there are enough), the children meet at a start line
(a Barrier), and stamp `time.perf_counter()` (CLOCK_MONOTONIC, shared by all
processes) when they start and finish; a run lasts from the first start to
the last finish, so process start and exit are not counted. Fairness is
the first finisher's time over the last's (1.0: both end together).

Prints one line of flat JSON:

    {"seconds": median, "seconds_p10": ..., "seconds_p90": ..., "seconds_n": S,
     "ops": PROCS*N, "fairness": median, "python": "3.11.7"}

Run by benches/benches/compare.rs; counts come from its arguments.
"""

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time


def child(i, n, v, cpu, start_line, stamps):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    start_line.wait()
    t0 = time.perf_counter()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    stamps[2 * i] = t0
    stamps[2 * i + 1] = time.perf_counter()


def one_run(ctx, n, procs):
    v = ctx.Value("q", 0)
    start_line = ctx.Barrier(procs)
    stamps = ctx.RawArray("d", 2 * procs)
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= procs
    ps = [
        ctx.Process(target=child, args=(i, n, v, cpus[i] if pin else None, start_line, stamps))
        for i in range(procs)
    ]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"child exited with {p.exitcode}")
    if v.value != n * procs:
        raise SystemExit(f"lost increments: {v.value} != {n * procs}")
    t0 = min(stamps[0::2])
    ends = stamps[1::2]
    return max(ends) - t0, (min(ends) - t0) / (max(ends) - t0)


def nearest_rank(sorted_samples, pct):
    return sorted_samples[(len(sorted_samples) - 1) * pct // 100]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000, help="increments per process")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    for _ in range(args.warmup):
        one_run(ctx, args.n, args.procs)
    runs = [one_run(ctx, args.n, args.procs) for _ in range(max(args.samples, 1))]
    secs = sorted(r[0] for r in runs)
    print(
        json.dumps(
            {
                "seconds": statistics.median(secs),
                "seconds_p10": nearest_rank(secs, 10),
                "seconds_p90": nearest_rank(secs, 90),
                "seconds_n": len(secs),
                "ops": args.n * args.procs,
                "fairness": statistics.median(r[1] for r in runs),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
