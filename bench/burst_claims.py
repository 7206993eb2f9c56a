"""Claims of a burst: 512 worker threads each claim a job at the same moment, beside an event loop that holds the GIL
about two thirds of the time (as vLLM's output processing does in an LLM worker). Seconds until the last claim is
answered, with each claim its own round trip (the claim script called directly, as before) and through
`JobStore.claim` (calls combined into one pipeline per round trip). Alternating rounds, one private Redis.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import redis

from bench.holding_worker import busy_engine_loop
from devtools.processes import start_redis
from maoocr.store.jobs import JobStore, new_call_id
from maoocr.store.keys import JOB_KEY

WORKER = "llm-1 0123abcd"


def one_round(client: redis.Redis, combined: bool, jobs: int) -> tuple[float, float]:
    """(last claim answered, median) in seconds after all threads were let go."""
    client.flushall()
    store = JobStore(client, 600)
    ids = [store.create("generation", model="m").id for _ in range(jobs)]
    go = threading.Event()
    answered: list[float] = []

    def claim(job_id: str) -> None:
        go.wait()
        if combined:
            store.claim(job_id, WORKER)
        else:  # what JobStore.claim did before its calls were combined: the script, one round trip per thread
            store._claim(keys=[JOB_KEY.format(job_id)], args=[WORKER, 600, time.time(), new_call_id()])
        answered.append(time.perf_counter())

    threads = [threading.Thread(target=claim, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # every thread waits on the event
    start = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    if len(answered) != jobs or client.hget(JOB_KEY.format(ids[-1]), "status") != "running":
        raise RuntimeError(f"{jobs - len(answered)} of {jobs} claims failed (their threads' tracebacks are above)")
    return max(answered) - start, statistics.median(answered) - start


def run(jobs: int = 512, rounds: int = 5) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="maoocr-claims-"))
    redis_proc, url = start_redis(work / "redis")
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    hog = asyncio.run_coroutine_threadsafe(busy_engine_loop(), loop)
    client = redis.Redis.from_url(url, decode_responses=True, max_connections=jobs + 8)
    results: dict[str, list[tuple[float, float]]] = {"per_thread": [], "combined": []}
    try:
        for _ in range(rounds):
            for mode in results:
                results[mode].append(one_round(client, mode == "combined", jobs))
    finally:
        hog.cancel()
        loop.call_soon_threadsafe(loop.stop)
        redis_proc.stop()
    median = {mode: statistics.median(last for last, _ in rounds_) for mode, rounds_ in results.items()}
    return [
        *({"metric": f"claims_{mode}_last_s", "value": round(median[mode], 4), "jobs": jobs,
           "rounds_last_s": [round(last, 4) for last, _ in rounds_],
           "rounds_p50_s": [round(p50, 4) for _, p50 in rounds_],
           "note": "median over rounds: seconds until the last of the burst's claims was answered"}
          for mode, rounds_ in results.items()),
        {"metric": "claims_combined_speedup", "value": round(median["per_thread"] / median["combined"], 2),
         "jobs": jobs},
    ]
