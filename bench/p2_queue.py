"""P2: what the queue costs. Round-trip latency and jobs/s of a trivial job through API → Redis → worker,
against a bare Celery echo task on the same Redis, in the same run.

The trivial job is a real generation with max_tokens=1 on the tiny demo model (`POST /api/generate`,
`"wait": true`): no special job kind exists only to be benchmarked, so this times the path users take.
It still contains the engine's own time: each job's record says when the worker claimed it and when its
result was written, and the round trip minus that window is the queue's part (`..._without_engine`).
The echo and MaoOCR paths run side by side and are measured interleaved (the machine is shared); the engine
alone (same requests, same concurrency) is timed after the stack stops, for the throughput it allows.
`p2_cpu_ms_per_job_*` (CPU time of each process per job) hardly moves with the machine's load: compare
optimisations with it.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.echo_worker import ECHO_QUEUE, ECHO_TASK, create_echo_app
from bench.resident_engine import ResidentEngine, wait_for_free_gpu
from bench.stats import closed_loop_rate, cpu_seconds, summary_ms
from devtools.processes import (BENCH_LOG_LEVEL, api_server, service_env, start_module, start_redis,
                                     start_stack, wait_until, write_config)

MAX_NUM_SEQS = 64  # the LLM worker's thread pool width (max_num_seqs); the echo worker gets the same


@dataclass
class P2Options:
    latency_jobs: int = 200  # one at a time
    throughput_jobs: int = 600  # closed loop with `concurrency` clients
    concurrency: int = 16
    warmup: int = 20
    rounds: int = 3  # throughput blocks per path, interleaved
    gpu: bool = False  # the worker's engine, and then the engine alone, on GPU 0 (the tiny demo model)
    api_workers: int = 0  # >= 1: the API under gunicorn gthread (as docker-compose serves it), that many processes


def prompt(i: int) -> str:
    return f"Echo job {i}: say one word"


class EchoClient:
    """Calls the echo task through a bare Celery worker started here, like any Celery client would."""

    def __init__(self, config: Path, workdir: Path) -> None:
        from maoocr.config import load_settings

        self.worker = start_module("echo-worker", "bench.echo_worker", ["--concurrency", str(MAX_NUM_SEQS)],
                                   service_env(config, workdir / "tmp"), workdir / "logs")
        self.app = create_echo_app(load_settings(config, env={}))
        wait_until(self._answers, [self.worker], timeout_s=120)

    def __call__(self, i: int) -> None:
        result = self.app.send_task(ECHO_TASK, args=[i], queue=ECHO_QUEUE, ignore_result=False)
        assert result.get(timeout=60) == i

    def _answers(self) -> bool:
        try:
            self(0)
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.worker.stop()
        self.app.close()


class ApiClient:
    """`POST /api/generate` with `"wait": true`, one keep-alive connection per client thread."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.local = threading.local()
        self.job_ids: list[str] = []

    def __call__(self, i: int) -> None:
        session = getattr(self.local, "session", None) or requests.Session()
        self.local.session = session
        reply = session.post(self.base_url + "/api/generate", timeout=120, json={
            "prompt": prompt(i), "max_tokens": 1, "temperature": 0, "ignore_eos": True, "wait": True})
        reply.raise_for_status()
        assert reply.json()["usage"]["completion_tokens"] == 1
        self.job_ids.append(reply.json()["job_id"])

    def worker_windows(self, job_ids: list[str]) -> list[float]:
        """Seconds from claim to result of each job (`started_at` → `finished_at` of its record): the engine's
        time plus the claim's write, as the worker saw it."""
        windows = []
        for job_id in job_ids:
            record = requests.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=30).json()
            windows.append(record["finished_at"] - record["started_at"])
        return windows


class EngineClient:
    """The same request straight to the engine class, on its own event-loop thread (as in a worker)."""

    def __init__(self, config: Path, gpu: bool = False) -> None:
        self.resident = ResidentEngine(config, gpu=gpu)

    def __call__(self, i: int) -> None:
        self.resident.run(self._one(i))

    async def _one(self, i: int) -> None:
        from maoocr.protocol.generation import GenerationParams

        params = GenerationParams(model=self.resident.model, prompt=prompt(i), max_tokens=1, temperature=0,
                                  ignore_eos=True)
        async for _ in self.resident.engine.generate(params, f"p2-{i}-{time.monotonic_ns()}"):
            pass

    def close(self) -> None:
        self.resident.close()


def interleaved(clients: dict, options: P2Options, pids: dict[str, tuple[int, bool]]) -> dict[str, dict]:
    """Latency and throughput of every client, interleaved so that all of them see the same machine.

    The machine is shared and its load drifts; measuring one path after the other would compare
    different moments. Latency samples alternate job by job, throughput in rounds of blocks.
    """
    for call in clients.values():
        for i in range(options.warmup):
            call(-1 - i)
    latencies: dict[str, list[float]] = {name: [] for name in clients}
    api: ApiClient = clients["api"]
    api.job_ids.clear()
    cpu_before = {name: cpu_seconds(*pid) for name, pid in pids.items()}
    for i in range(options.latency_jobs):
        for name, call in clients.items():
            start = time.perf_counter()
            call(i)
            latencies[name].append(time.perf_counter() - start)
    cpu_ms = {name: round((cpu_seconds(*pid) - cpu_before[name]) * 1000 / options.latency_jobs, 3)
              for name, pid in pids.items()}
    # Per job, not p50 minus p50: the subtraction cancels the machine's drift job by job.
    outside = [total - window for total, window in zip(latencies["api"], api.worker_windows(list(api.job_ids)))]
    jobs = {name: 0 for name in clients}
    seconds = {name: 0.0 for name in clients}
    block = options.throughput_jobs // options.rounds
    for _ in range(options.rounds):
        for name, call in clients.items():
            _, spent = closed_loop_rate(call, block, options.concurrency)
            jobs[name] += block
            seconds[name] += spent
    results = {name: {**summary_ms(latencies[name]), "jobs_s": round(jobs[name] / seconds[name], 1),
                      "throughput_seconds": round(seconds[name], 3)} for name in clients}
    results["api_outside_worker"] = summary_ms(outside)
    results["cpu_ms_per_job"] = cpu_ms
    return results


def run(options: P2Options) -> list[dict]:
    from maoocr.engines.demo_model import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="maoocr-p2-"))
    model_path = str(build_demo_model(work / "model"))
    model = {"max_num_seqs": MAX_NUM_SEQS}
    redis_proc, redis_url = start_redis(work / "redis")
    echo = stack = None
    try:
        echo = EchoClient(write_config(work / "echo", redis_url, model_path, model, log_level=BENCH_LOG_LEVEL),
                          work / "echo")
        stack = start_stack(work / "stack", redis_url, model_path, ["--gpu", "0"] if options.gpu else ["--cpu"],
                            model=model, log_level=BENCH_LOG_LEVEL, api_workers=options.api_workers)
        pids = {proc.name: proc.popen.pid for proc in stack.procs}
        results = interleaved({"api": ApiClient(stack.base_url), "echo": echo}, options,
                              {"api_process": (pids["api"], bool(options.api_workers)),  # gunicorn: and workers
                               "llm_worker_main": (pids["worker"], False),
                               "llm_worker_with_engine_core": (pids["worker"], True),
                               "echo_worker": (echo.worker.popen.pid, True)})
        stack.stop()  # the engine alone next, on cores the worker no longer uses
        wait_for_free_gpu(options.gpu)
        engine = EngineClient(stack.config, gpu=options.gpu)
        try:
            _, spent = closed_loop_rate(engine, options.warmup, options.concurrency)
            rate, spent = closed_loop_rate(engine, options.throughput_jobs, options.concurrency)
        finally:
            engine.close()
    finally:
        if stack is not None:
            stack.stop()
        if echo is not None:
            echo.close()
        redis_proc.stop()
    ours, echo_r, outside = results["api"], results["echo"], results["api_outside_worker"]
    common = {"concurrency": options.concurrency, "latency_jobs": options.latency_jobs,
              "throughput_jobs": options.throughput_jobs,
              "job": f"generation, max_tokens=1, tiny demo model, {'gpu' if options.gpu else 'cpu'}",
              "api": api_server(options.api_workers)}
    return [
        {"metric": "p2_api_latency_p50_ms", "value": ours["p50_ms"], **ours, **common},
        {"metric": "p2_echo_latency_p50_ms", "value": echo_r["p50_ms"], **echo_r, **common},
        {"metric": "p2_api_outside_worker_p50_ms", "value": outside["p50_ms"], **outside,
         "note": "per job: round trip minus the record's started_at -> finished_at (engine + claim write)",
         **common},
        *({"metric": f"p2_cpu_ms_per_job_{name}", "value": value,
           "note": "CPU time of that process (and children) per job during the latency loop"}
          for name, value in results["cpu_ms_per_job"].items()),
        {"metric": "p2_api_jobs_s", "value": ours["jobs_s"], **common},
        {"metric": "p2_echo_jobs_s", "value": echo_r["jobs_s"], **common},
        {"metric": "p2_engine_jobs_s", "value": round(rate, 1), "seconds": round(spent, 3),
         "note": "the engine alone, same requests and concurrency, after the stack stopped", **common},
        # The goal is on the queue's own share: user-visible latency is judged against vllm serve (bench serve).
        {"metric": "p2_latency_ratio", "value": round(ours["p50_ms"] / echo_r["p50_ms"], 3),
         "p99_ratio": round(ours["p99_ms"] / echo_r["p99_ms"], 3), **common},
        {"metric": "p2_latency_ratio_without_engine", "value": round(outside["p50_ms"] / echo_r["p50_ms"], 3),
         "goal": "<= 1.2", "p99_ratio": round(outside["p99_ms"] / echo_r["p99_ms"], 3), **common},
        {"metric": "p2_throughput_ratio", "value": round(ours["jobs_s"] / echo_r["jobs_s"], 3), "goal": ">= 0.8",
         **common},
        {"metric": "p2_throughput_vs_engine_ratio", "value": round(ours["jobs_s"] / rate, 3), **common},
    ]
