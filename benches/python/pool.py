"""Peer for shm's Pool benchmarks: Python's multiprocessing.Pool,
concurrent.futures.ProcessPoolExecutor and (when importable) mpire.

Measures, with 2 workers and a trivial task (x + 1), the same shapes as the
Rust side of benches/src/groups/pool.rs:

- tasks per second of `map` at chunksize 1 and at the default chunksize;
- the `apply_async(f, (x,)).get()` round trip (median, p10, p90, p99);
- ProcessPoolExecutor `map` at its default chunksize of 1;
- mpire `WorkerPool(2).map` at chunksize 1, if mpire imports;
- ProcessPoolExecutor: the time from SIGKILL of a worker to the caller's
  error (BrokenProcessPool). Python's Pool is not timed there: it hangs.

Prints one line of flat JSON (see benches/src/harness/python.rs). Run by
benches/benches/compare.rs; counts come from its arguments.
"""

import argparse
import json
import multiprocessing
import os
import platform
import signal
import time

from stats_util import nearest_rank, rates, summary
from concurrent.futures import ProcessPoolExecutor


def triv(x):
    return x + 1


def sleepy(x):
    time.sleep(30)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c1", type=int, default=20000)
    ap.add_argument("--default", type=int, default=2000000)
    ap.add_argument("--apply", type=int, default=2000)
    ap.add_argument("--ppe", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kills", type=int, default=5)
    a = ap.parse_args()
    out = {"python": platform.python_version()}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(triv, range(1000))
        summary("pool_c1", rates(lambda: pool.map(triv, range(a.c1), chunksize=1), a.c1, a.rounds), out)
        summary("pool_default", rates(lambda: pool.map(triv, range(a.default)), a.default, a.rounds), out)
        lat = []
        for i in range(a.apply + 100):
            t = time.perf_counter()
            pool.apply_async(triv, (i,)).get()
            if i >= 100:
                lat.append(time.perf_counter() - t)
        summary("apply", lat, out)
        out["apply_p99"] = nearest_rank(sorted(lat), 99)
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        list(ex.map(triv, range(100)))
        summary("ppe_c1", rates(lambda: list(ex.map(triv, range(a.ppe))), a.ppe, a.rounds), out)
    kill = []
    for _ in range(a.kills):
        ex = ProcessPoolExecutor(2, mp_context=ctx)
        futs = [ex.submit(sleepy, i) for i in range(2)]
        # Wait for both workers to exist and run their task.
        deadline = time.monotonic() + 10
        while len(ex._processes) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)
        pid = next(iter(ex._processes))
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        try:
            futs[0].result(timeout=10)
        except Exception:
            pass
        kill.append(time.perf_counter() - t)
        ex.shutdown(wait=False, cancel_futures=True)
        for p in list(ex._processes.values()) if ex._processes else []:
            p.kill()
    summary("ppe_kill", kill, out)
    out["ppe_kill_max"] = max(kill)
    try:
        from mpire import WorkerPool

        with WorkerPool(n_jobs=2, start_method="fork") as wp:
            wp.map(triv, range(1000))
            n = a.ppe
            summary("mpire_c1", rates(lambda: wp.map(triv, range(n), chunk_size=1), n, a.rounds), out)
        out["mpire"] = "yes"
    except ImportError as e:
        out["mpire"] = f"not installed ({e.name})"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
