"""Intake of a burst: how soon a Celery thread-pool worker configured as MaoOCR's LLM worker starts 512 jobs
sent at once, with kombu's stock intake and with `workers.batched_intake`, beside a GIL-busy event loop
(`bench.holding_worker --gil-hog`, standing in for vLLM's output processing). Alternating rounds, one Redis.

The spread over which a worker starts a burst's jobs is most of the gap between the engine fed through the queue
and the same engine given all prompts at once (README, P1).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.holding_worker import QUEUE, RELEASE, STARTED, TASK
from devtools.processes import BENCH_LOG_LEVEL, service_env, start_module, start_redis, wait_until, write_config

MODES = {"stock": [], "batched": ["--batched-intake"]}


@dataclass
class IntakeOptions:
    jobs: int = 512
    rounds: int = 3


def one_round(client: redis.Redis, app, env: dict, logs: Path, mode: str, jobs: int) -> dict:
    client.flushall()
    worker = start_module(f"held-{mode}", "bench.holding_worker",
                          ["--concurrency", str(jobs), "--gil-hog", *MODES[mode]], env, logs)
    try:
        send(app, [-1])  # the worker is up and consuming once this one has started
        wait_until(lambda: client.llen(STARTED) == 1, [worker], timeout_s=120)
        client.set(RELEASE, 1)
        wait_until(lambda: client.hlen("unacked") == 0, [worker], timeout_s=60)  # its slot is free again
        client.delete(STARTED, RELEASE)
        time.sleep(0.5)  # the worker sees the release key gone
        first = time.time()
        send(app, range(jobs))
        sent = time.time() - first
        wait_until(lambda: client.llen(STARTED) == jobs, [worker], timeout_s=300)
        starts = sorted(float(entry.split()[1]) - first for entry in client.lrange(STARTED, 0, -1))
        return {"sent_s": round(sent, 3), "p50_started_s": round(starts[len(starts) // 2], 3),
                "all_started_s": round(starts[-1], 3)}
    finally:
        client.set(RELEASE, 1)
        worker.stop()


def send(app, values, priority: int = 0) -> None:
    with app.producer_or_acquire() as producer:
        for value in values:
            app.send_task(TASK, args=[value], queue=QUEUE, producer=producer, priority=priority)


def run(options: IntakeOptions) -> list[dict]:
    from maoocr.config import load_settings
    from workers.celery_app import create_celery_app

    work = Path(tempfile.mkdtemp(prefix="maoocr-intake-"))
    redis_proc, url = start_redis(work / "redis")
    config = write_config(work / "configs", url, "unused", log_level=BENCH_LOG_LEVEL)
    app = create_celery_app(load_settings(config, env={}))
    client = redis.Redis.from_url(url)
    rounds: dict[str, list[dict]] = {mode: [] for mode in MODES}
    try:
        for _ in range(options.rounds):
            for mode in MODES:
                rounds[mode].append(one_round(client, app, service_env(config, work / "tmp"), work / "logs", mode,
                                              options.jobs))
    finally:
        app.close()
        redis_proc.stop()
    median = {mode: statistics.median(r["all_started_s"] for r in rounds[mode]) for mode in MODES}
    return [
        *({"metric": f"intake_{mode}_all_started_s", "value": median[mode], "rounds": rounds[mode],
           "jobs": options.jobs, "note": "median over rounds: seconds from the first send to the last job's start"}
          for mode in MODES),
        {"metric": "intake_batched_speedup", "value": round(median["stock"] / median["batched"], 3),
         "jobs": options.jobs},
    ]
