"""Peer for shm's process start+join benchmark: Python's multiprocessing.

For each start method, starts and joins `Process(target=noop)` N times after a
warm-up, timing start()+join() of each (the Process object is built outside
the timer, as in the Rust side), and prints one line of flat JSON:

    {"fork": median_seconds, "fork_p10": ..., "fork_p90": ..., "fork_n": N, ...,
     "python": "3.11.7"}

Run by benches/benches/compare.rs; counts come from its arguments.
"""

import argparse
import json
import multiprocessing
import platform
import statistics
import time


def noop():
    pass


def nearest_rank(sorted_samples, pct):
    return sorted_samples[(len(sorted_samples) - 1) * pct // 100]


def measure(method, n, warmup):
    ctx = multiprocessing.get_context(method)
    samples = []
    for i in range(warmup + n):
        p = ctx.Process(target=noop)
        t = time.perf_counter()
        p.start()
        p.join()
        dt = time.perf_counter() - t
        if p.exitcode != 0:
            raise SystemExit(f"{method} child exited with {p.exitcode}")
        if i >= warmup:
            samples.append(dt)
    samples.sort()
    return {
        method: statistics.median(samples),
        f"{method}_p10": nearest_rank(samples, 10),
        f"{method}_p90": nearest_rank(samples, 90),
        f"{method}_n": n,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fork", type=int, default=50)
    ap.add_argument("--forkserver", type=int, default=50)
    ap.add_argument("--spawn", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    out = {}
    for method, n in (("fork", args.fork), ("forkserver", args.forkserver), ("spawn", args.spawn)):
        out.update(measure(method, max(n, 1), args.warmup))
    out["python"] = platform.python_version()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
