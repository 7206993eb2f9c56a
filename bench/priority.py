"""Priorities under a bulk backlog: how soon an interactive request's first token comes while bulk jobs saturate
the worker, against the same request on an idle system, and what keeping slots free costs the bulk work.

Two stacks, one after the other, on the same engine settings:
- `reserve 0`: the worker lets bulk jobs take every slot (`priorities.interactive_reserve: 0`). Measured: bulk
  throughput alone (the baseline), and interactive requests sent at bulk priority during the backlog (what a
  system without priorities gives them).
- `reserve on` (the shipped default share): interactive requests on an idle system (the goal's reference), bulk
  throughput alone, then interactive requests at their default priority during the backlog, with the bulk
  throughput meanwhile.
Interactive requests are streamed one after another from `/v1/completions`; TTFT is the client's time from sending
to the first content chunk. Bulk jobs go through `/api/generate` at priority 'bulk' with ignore_eos and lengths
spread over max_tokens/2..3*max_tokens/2, so they do not end in lockstep. Bulk throughput is read from the worker's
own token counter over a window in which the bulk queue never ran empty.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import redis
import requests

from bench.resident_engine import wait_for_free_gpu
from bench.stats import summary_ms
from devtools.processes import BENCH_LOG_LEVEL, Stack, start_redis, start_stack
from maoocr.config import PrioritySettings, load_settings
from maoocr.priorities import queue_list, reserved_slots
from maoocr.store.heartbeats import live_workers

TOKENS_LINE = re.compile(r'^maoocr_generated_tokens_total\{model="(?P<model>[^"]+)"\} (?P<value>\S+)$', re.MULTILINE)


@dataclass
class PriorityOptions:
    gpu: bool = False
    model_path: str | None = None  # default: the tiny demo model
    load_format: str = "auto"
    extra_model: dict | None = None
    max_num_seqs: int = 64
    bulk_max_tokens: int = 128
    interactive_requests: int = 40
    interactive_max_tokens: int = 16
    interactive_gap_s: float = 0.2
    window_s: float = 10.0  # bulk throughput is measured over this long
    submit_threads: int = 16


def run(options: PriorityOptions) -> Iterator[dict]:
    from maoocr.engines.demo_model import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="maoocr-priority-"))
    model_path = options.model_path or str(build_demo_model(work / "model"))
    model = {"max_model_len": 1024, "max_num_seqs": options.max_num_seqs, "load_format": options.load_format,
             **(options.extra_model or {})}
    share = PrioritySettings().interactive_reserve
    common = {"device": "gpu" if options.gpu else "cpu", "max_num_seqs": options.max_num_seqs,
              "bulk_max_tokens": f"{options.bulk_max_tokens // 2}..{3 * options.bulk_max_tokens // 2}",
              "interactive_max_tokens": options.interactive_max_tokens, "window_s": options.window_s}
    baseline = None
    for reserve in (0.0, share):
        wait_for_free_gpu(options.gpu)
        redis_proc, redis_url = start_redis(work / f"redis-{reserve}")
        stack = None
        try:
            stack = start_stack(work / f"stack-{reserve}", redis_url, model_path,
                                ["--gpu", "0"] if options.gpu else ["--cpu"], model=model, api_workers=2,
                                api_threads=64, log_level=BENCH_LOG_LEVEL,
                                env={"MAOOCR_PRIORITIES__INTERACTIVE_RESERVE": str(reserve)})
            bench = Bench(stack, options)
            bench.interactive(priority=None)  # warm-up: the engine has seen both kinds of request
            if reserve == 0:
                baseline = bench.bulk_throughput(with_interactive=None)["tokens_s"]
                flat = bench.bulk_throughput(with_interactive="bulk")
                yield {"figure": "priority_bulk_tokens_s", "reserve": 0, "bulk_tokens_s": round(baseline, 1),
                       **common}
                yield {"figure": "priority_ttft_without_priorities_ms", **flat["ttft"], **common}
                continue
            idle = summary_ms(bench.interactive(priority=None))
            yield {"figure": "priority_ttft_idle_ms", **idle, **common}
            alone = bench.bulk_throughput(with_interactive=None)
            mixed = bench.bulk_throughput(with_interactive="default")
            loaded = mixed["ttft"]
            yield {"figure": "priority_ttft_under_bulk_ms", **loaded, "reserve_share": share, **common}
            yield {"figure": "priority_ttft_ratio", "p50": round(loaded["p50_ms"] / idle["p50_ms"], 3),
                   "p99": round(loaded["p99_ms"] / idle["p99_ms"], 3), "goal": "<= 2", **common}
            yield {"figure": "priority_bulk_throughput_lost",
                   "reserve_alone": round(1 - alone["tokens_s"] / baseline, 4),
                   "with_interactive": round(1 - mixed["tokens_s"] / baseline, 4), "goal": "<= 0.05",
                   "bulk_tokens_s": {"reserve_0": round(baseline, 1), "reserve_on": round(alone["tokens_s"], 1),
                                     "reserve_on_with_interactive": round(mixed["tokens_s"], 1)},
                   "reserve_share": share, **common}
        finally:
            if stack is not None:
                stack.stop()
            redis_proc.stop()


class Bench:
    def __init__(self, stack: Stack, options: PriorityOptions) -> None:
        self.stack = stack
        self.options = options
        self.settings = load_settings(stack.config, env={})
        self.redis = redis.Redis.from_url(stack.redis_url)
        self.queue = self.settings.queues.llm_queue(self.settings.default_model)
        self.session = requests.Session()
        self.numbers = itertools.count(1)

    def prompt(self) -> str:
        # A new prompt each time (from any thread): no prefix cache hit for either kind.
        return f"Request {next(self.numbers)}: write about the sea, its ships, and the people on them."

    def interactive(self, priority: str | None) -> list[float]:
        """TTFTs (s) of interactive streamed completions sent one after another."""
        ttfts = []
        for _ in range(self.options.interactive_requests):
            body = {"prompt": self.prompt(), "max_tokens": self.options.interactive_max_tokens, "stream": True,
                    "ignore_eos": True, **({"priority": priority} if priority else {})}
            sent = time.perf_counter()
            with self.session.post(self.stack.base_url + "/v1/completions", json=body, stream=True,
                                   timeout=300) as reply:
                reply.raise_for_status()
                first = None
                for line in reply.iter_lines(chunk_size=None):
                    if first is None and line.startswith(b"data: {") and json.loads(line[6:])["choices"][0]["text"]:
                        first = time.perf_counter() - sent
                if first is None:
                    raise RuntimeError("a completion streamed no text")
            ttfts.append(first)
            time.sleep(self.options.interactive_gap_s)
        return ttfts

    def bulk_throughput(self, with_interactive: str | None) -> dict:
        """Keep a bulk backlog queued (a feeder tops the queue up to the worker's size), measure the worker's token
        rate over the window (with interactive requests meanwhile, at `with_interactive` priority: 'default' for
        none named; the window lasts as long as they do, at least `window_s`), then cancel what is left."""
        job_ids: list[str] = []
        stop = threading.Event()
        feeder = threading.Thread(target=self.feed_bulk, args=(job_ids, stop), daemon=True)
        feeder.start()
        try:
            self.wait_saturated()
            start_tokens, start = self.generated_tokens(), time.perf_counter()
            ttft = None
            if with_interactive:
                ttft = summary_ms(self.interactive(None if with_interactive == "default" else with_interactive))
            remaining = self.options.window_s - (time.perf_counter() - start)
            if remaining > 0:
                time.sleep(remaining)
            tokens, elapsed = self.generated_tokens() - start_tokens, time.perf_counter() - start
            backlog = self.redis.llen(queue_list(self.queue, self.settings.priorities.bulk))
        finally:
            stop.set()
            feeder.join()
            self.cancel(job_ids)
        if backlog == 0:
            raise RuntimeError("the bulk backlog ran out inside the window: the feeder could not keep up")
        return {"tokens_s": tokens / elapsed, "ttft": ttft, "backlog_left": backlog, "bulk_jobs": len(job_ids)}

    def feed_bulk(self, job_ids: list[str], stop: threading.Event) -> None:
        """Tops the bulk queue up to `max_num_seqs` waiting jobs, in rounds, until `stop`."""
        bulk_list = queue_list(self.queue, self.settings.priorities.bulk)
        with ThreadPoolExecutor(self.options.submit_threads) as pool:
            while not stop.is_set():
                missing = self.options.max_num_seqs - self.redis.llen(bulk_list)
                if missing > 0:
                    job_ids.extend(pool.map(self.submit_bulk, range(missing)))
                stop.wait(0.05)

    def submit_bulk(self, _: int) -> str:
        tokens = random.randint(self.options.bulk_max_tokens // 2, 3 * self.options.bulk_max_tokens // 2)
        reply = requests.post(self.stack.base_url + "/api/generate", timeout=60, json={
            "prompt": self.prompt(), "max_tokens": tokens, "ignore_eos": True, "priority": "bulk"})
        reply.raise_for_status()
        return reply.json()["job_id"]

    def worker(self) -> dict:
        return next(w for w in live_workers(self.redis) if w.get("kind") == "llm")

    def wait_saturated(self, timeout_s: float = 300) -> None:
        """Until the worker runs as many bulk jobs as it takes (its slots less the reserved ones), then a second
        more for the engine to take them all in."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            worker = self.worker()
            full = worker["concurrency"] - reserved_slots(worker["concurrency"],
                                                          self.settings.priorities.interactive_reserve)
            if worker.get("jobs_running", 0) >= full:
                time.sleep(1)
                return
            time.sleep(0.5)
        raise RuntimeError("the worker did not fill up with bulk jobs")

    def generated_tokens(self) -> float:
        port = self.worker()["metrics_port"]
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return sum(float(m["value"]) for m in TOKENS_LINE.finditer(text))

    def cancel(self, job_ids: list[str]) -> None:
        with ThreadPoolExecutor(self.options.submit_threads) as pool:
            list(pool.map(lambda job: requests.delete(f"{self.stack.base_url}/v1/jobs/{job}", timeout=60),
                          job_ids))
        deadline = time.monotonic() + 120
        while self.worker().get("jobs_running", 0) and time.monotonic() < deadline:
            time.sleep(0.5)
