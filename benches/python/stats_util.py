"""Summaries shared by the Python peer scripts (pool.py, manager.py): the
same shapes as benches/src/harness/stats.rs reads back from their JSON."""

import statistics
import time


def nearest_rank(sorted_samples, pct):
    return sorted_samples[(len(sorted_samples) - 1) * pct // 100]


def summary(key, samples, out):
    s = sorted(samples)
    out[key] = statistics.median(s)
    out[f"{key}_p10"] = nearest_rank(s, 10)
    out[f"{key}_p90"] = nearest_rank(s, 90)
    out[f"{key}_n"] = len(s)


def rates(run, n, rounds):
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        run()
        samples.append(n / (time.perf_counter() - t))
    return samples
