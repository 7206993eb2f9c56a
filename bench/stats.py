"""Small helpers the benchmarks share: percentiles of latency samples and closed-loop load from threads."""

from __future__ import annotations

import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed, no interpolation."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_s: list[float]) -> dict:
    """p50 / p99 / mean / max in milliseconds of samples given in seconds."""
    ms = [s * 1000 for s in samples_s]
    return {"p50_ms": round(percentile(ms, 50), 3), "p99_ms": round(percentile(ms, 99), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "max_ms": round(max(ms), 3), "n": len(ms)}


def closed_loop_rate(call: Callable[[int], object], count: int, concurrency: int) -> tuple[float, float]:
    """`concurrency` threads call back to back until `count` calls are done; returns (calls/s, seconds)."""
    counter = iter(range(count))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            call(i)

    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
        seconds = time.perf_counter() - start
    return count / seconds, seconds


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU seconds used so far by a process (and its live children, e.g. vLLM's engine core).

    Unlike wall time, this hardly moves when other programs load the machine: it is the figure to compare
    before and after an optimisation on a shared machine.
    """
    import psutil

    process = psutil.Process(pid)
    procs = [process, *(process.children(recursive=True) if children else [])]
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total
