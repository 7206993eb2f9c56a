"""The end of a burst at the API: N requests wait (`POST /api/generate`, `"wait": true`) on jobs that all end at the
same moment, as a burst's jobs of one length end on the same engine step; seconds from the last job's end to the
last reply, and the API's CPU per request (the whole request: create, wait, answer). The jobs are ended from here
(claim, then the worker's own transition, from N threads at once), so the API's side of P1's round end is measured
alone: done events, record reads, answers.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.api_load import LoadGenerator
from bench.stats import cpu_seconds
from devtools.processes import (BENCH_LOG_LEVEL, api_server, service_env, start_api, start_redis, wait_http,
                                     wait_until, write_config)
from maoocr.embedded import free_port
from maoocr.protocol.generation import Choice, GenerationResult, Usage
from maoocr.store.jobs import JobStore
from maoocr.store.keys import JOB_KEY, WORKER_KEY

WORKER = "bench-worker 0123abcd"
RESULT = GenerationResult(model="demo", usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
                          choices=[Choice(index=0, text="x", finish_reason="length", completion_tokens=1)]).model_dump()


@dataclass
class BurstEndOptions:
    jobs: int = 512
    rounds: int = 5
    api_workers: int = 0  # 0: one `maoocr api` process; N: gunicorn gthread x N
    client_processes: int = 2


def one_round(client: redis.Redis, jobs: JobStore, load: LoadGenerator, n: int, api_pid: int) -> dict:
    for key in client.scan_iter(JOB_KEY.format("*")):
        client.delete(key)
    cpu = cpu_seconds(api_pid)
    _, futures = load.fire([[("hi", 1)]] * n)  # one job per client slot: a burst
    wait_until(lambda: sum(1 for _ in client.scan_iter(JOB_KEY.format("*"), count=1000)) >= n, [], timeout_s=60)
    time.sleep(1.0)  # every request is waiting on its job by now
    ids = [key.split(":")[2] for key in client.scan_iter(JOB_KEY.format("*"), count=1000)]
    for job_id in ids:
        jobs.claim(job_id, WORKER)
    go = threading.Event()
    ended: list[float] = []

    def end(job_id: str) -> None:
        go.wait()
        jobs.transition(job_id, ("running",), "succeeded", fence=WORKER, result=RESULT)
        ended.append(time.time())

    threads = [threading.Thread(target=end, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join()
    parts = [future.result() for future in futures]
    answered = sum(part[0] for part in parts)
    if answered != n:
        raise RuntimeError(f"{n - answered} of {n} waiting requests got no result: {[p[2][:1] for p in parts]}")
    return {"tail_s": round(max(part[3] for part in parts) - max(ended), 4),
            "jobs_ended_within_s": round(max(ended) - min(ended), 4),
            "api_cpu_ms_per_request": round((cpu_seconds(api_pid) - cpu) * 1000 / n, 3)}


def run(options: BurstEndOptions) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="maoocr-burst-end-"))
    redis_proc, url = start_redis(work / "redis")
    config = write_config(work / "configs", url, "unused", log_level=BENCH_LOG_LEVEL)
    env = service_env(config, work / "tmp")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api = start_api(port, env, work / "logs", options.api_workers, api_threads=256)  # a thread per waiting request
    client = redis.Redis.from_url(url, decode_responses=True, max_connections=options.jobs + 16)
    # A live heartbeat for the model's queue: the API accepts jobs only for models a worker serves.
    client.set(WORKER_KEY.format("bench-worker"), json.dumps({"instance": "0123abcd", "kind": "llm", "model": "demo",
                                                          "queue": "maoocr.llm.demo"}), ex=3600)
    load = None
    try:
        wait_http(base_url + "/healthz", [api])
        load = LoadGenerator(base_url, options.client_processes)
        jobs = JobStore(client, 600)
        rounds = [one_round(client, jobs, load, options.jobs, api.popen.pid) for _ in range(options.rounds)]
    finally:
        if load is not None:
            load.close()
        api.stop()
        redis_proc.stop()
    return [{"metric": "burst_end_tail_s", "value": statistics.median(r["tail_s"] for r in rounds),
             "rounds": rounds, "jobs": options.jobs, "api": api_server(options.api_workers),
             "client_processes": options.client_processes,
             "api_cpu_ms_per_request": statistics.median(r["api_cpu_ms_per_request"] for r in rounds),
             "note": "median over rounds: seconds from the last job's end to the last waiting request's reply"}]
