"""Peer for shm's Manager benchmarks: Python's multiprocessing.Manager and,
when importable, UltraDict.

Measures the same shapes as benches/src/groups/manager.rs:

- dict get and set per second from 1 process (keys 0..999, prefilled);
- dict get and set per second from 2 processes at once (each does the
  same number of operations; the rate is all operations over the wall time
  from the start signal to both processes joined);
- a registered class's method call round trip (median, p10, p90, p99);
- Namespace attribute read and write per second;
- UltraDict get and set per second from 1 and 2 processes, if it imports.

Prints one line of flat JSON (see benches/src/harness/python.rs).
"""

import argparse
import json
import multiprocessing
import platform
import time

from stats_util import nearest_rank, rates, summary
from multiprocessing.managers import BaseManager


class Counter:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1
        return self.n


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", Counter)


def dict_gets(d, n):
    for i in range(n):
        d[i % 1000]


def dict_sets(d, n):
    for i in range(n):
        d[i % 1000] = i


def worker(d, n, go, kind):
    go.wait()
    if kind == "get":
        dict_gets(d, n)
    else:
        dict_sets(d, n)


def two_procs(d, n, kind, rounds):
    samples = []
    for _ in range(rounds):
        go = multiprocessing.Event()
        ps = [multiprocessing.Process(target=worker, args=(d, n, go, kind)) for _ in range(2)]
        for p in ps:
            p.start()
        time.sleep(0.05)
        t = time.perf_counter()
        go.set()
        for p in ps:
            p.join()
        samples.append(2 * n / (time.perf_counter() - t))
    return samples


def ultradict_rows(ops, rounds, out):
    try:
        from UltraDict import UltraDict
    except Exception:
        return
    d = UltraDict(shared_lock=True)
    for i in range(1000):
        d[i] = i
    summary("ultra_get", rates(lambda: dict_gets(d, ops), ops, rounds), out)
    summary("ultra_set", rates(lambda: dict_sets(d, ops), ops, rounds), out)
    summary("ultra_get2", two_procs(d, ops, "get", rounds), out)
    summary("ultra_set2", two_procs(d, ops, "set", rounds), out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    out = {"python": platform.python_version()}

    with multiprocessing.Manager() as m:
        d = m.dict()
        for i in range(1000):
            d[i] = i
        summary("get", rates(lambda: dict_gets(d, a.ops), a.ops, a.rounds), out)
        summary("set", rates(lambda: dict_sets(d, a.ops), a.ops, a.rounds), out)
        summary("get2", two_procs(d, a.ops, "get", a.rounds), out)
        summary("set2", two_procs(d, a.ops, "set", a.rounds), out)

        ns = m.Namespace()
        ns.x = 1

        def ns_reads():
            for _ in range(a.ops):
                ns.x

        def ns_writes():
            for i in range(a.ops):
                ns.x = i

        summary("ns_get", rates(ns_reads, a.ops, a.rounds), out)
        summary("ns_set", rates(ns_writes, a.ops, a.rounds), out)

    with CounterManager() as cm:
        c = cm.Counter()
        for _ in range(a.calls // 10):
            c.bump()
        lat = []
        for _ in range(a.calls):
            t = time.perf_counter()
            c.bump()
            lat.append(time.perf_counter() - t)
        summary("call", lat, out)
        out["call_p99"] = nearest_rank(sorted(lat), 99)

    ultradict_rows(a.ops * 10, a.rounds, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
