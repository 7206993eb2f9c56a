"""P1: does vLLM's continuous batching survive the queue?

N concurrent generation jobs through API → Redis → worker → engine, against the same prompts given to the
same engine class directly (AsyncLLM), in the same run, in alternating rounds; optionally also against offline
`LLM.generate`. Prints output tokens/s of each and `p1_batching_ratio` (API / direct, over all rounds).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from bench.api_load import Job, LoadGenerator
from bench.resident_engine import ResidentEngine, wait_for_free_gpu
from bench.stats import cpu_seconds
from devtools.processes import BENCH_LOG_LEVEL, api_server, start_redis, start_stack

GPU_SHARE = 0.42  # of the GPU's memory for each of the two engines loaded side by side


@dataclass
class P1Options:
    concurrency: int = 32
    max_tokens: int = 128
    model_path: str | None = None  # default: the tiny demo model, built here
    gpu: bool = False
    load_format: str = "auto"
    max_model_len: int = 1024
    prompt_words: int = 0  # >0: WordLevel prompts of exactly this many tokens (bench.dummy_model)
    offline: bool = False  # also time vllm.LLM.generate in a separate process
    direct_every_token: bool = False  # also time the engine directly with stream_interval 1
    api_workers: int = 0  # >= 1: the API under gunicorn (gthread) with that many processes, as in production
    rounds: int = 3  # measured rounds per path, alternating
    client_processes: int = 0  # processes firing the API requests (0: min(8, cores)); see bench.api_load
    stock_intake: bool = False  # the worker with kombu's one-message-per-round-trip intake (worker.batched_intake off)
    sustained: int = 0  # >0: after the bursts, rounds where each of `concurrency` slots sends this many jobs in turn
    sustained_rounds: int = 2
    extra_model: dict = field(default_factory=dict)


def prompts(options: P1Options, count: int | None = None, first: int = 0) -> list[str]:
    count = count or options.concurrency
    if options.prompt_words:
        from bench.dummy_model import word_prompts

        return word_prompts(count, options.prompt_words, first)
    return [f"Job {i}: summarise the scanned invoice number {1000 + i} for the archive"
            for i in range(first, first + count)]


def burst(texts: list[str], max_tokens: int) -> list[list[Job]]:
    """One job per slot: every prompt at once."""
    return [[(text, max_tokens)] for text in texts]


def sustained_slots(options: P1Options, first: int) -> list[list[Job]]:
    """`options.concurrency` slots of `options.sustained` jobs each, with output lengths spread evenly over
    [max_tokens / 2, 3 * max_tokens / 2] (mean max_tokens) in a fixed pseudo-random order: jobs of one length
    would all end on the same engine step and arrive again together, a burst in disguise; real jobs differ."""
    count = options.concurrency * options.sustained
    texts = prompts(options, count, first)
    low, high = options.max_tokens // 2, options.max_tokens * 3 // 2
    lengths = [low + (high - low) * i // max(1, count - 1) for i in range(count)]
    random.Random(first).shuffle(lengths)
    jobs = list(zip(texts, lengths))
    return [jobs[i::options.concurrency] for i in range(options.concurrency)]


async def _direct(engine, slots: list[list[Job]], model: str, delays: list[float] | None = None) -> int:
    from maoocr.protocol.generation import GenerationParams

    async def one(i: int, jobs: list[Job]) -> int:
        if delays:
            await asyncio.sleep(delays[i % len(delays)])
        tokens = 0
        for prompt, max_tokens in jobs:
            params = GenerationParams(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                      ignore_eos=True)
            async for step in engine.generate(params, f"direct-{i}-{time.monotonic_ns()}"):
                tokens += sum(d.token_count for d in step.deltas)
        return tokens

    return sum(await asyncio.gather(*(one(i, jobs) for i, jobs in enumerate(slots))))


def directly(resident: ResidentEngine, slots: list[list[Job]], delays: list[float] | None = None
             ) -> tuple[float, int, float]:
    """The engine alone on these slots, all starting at once (or each after its delay): seconds, tokens, CPU seconds
    of this process (the engine core is another process; the API client threads are idle meanwhile)."""
    start, cpu = time.perf_counter(), time.process_time()
    tokens = resident.run(_direct(resident.engine, slots, resident.model, delays))
    return time.perf_counter() - start, tokens, time.process_time() - cpu


@dataclass
class Tally:
    """One path's measured rounds."""

    seconds: float = 0.0
    tokens: int = 0
    cpu_s: float = 0.0
    rates: list[float] = field(default_factory=list)
    cpu_ms_per_1k_rounds: list[float] = field(default_factory=list)
    timelines: list[dict] = field(default_factory=list)  # API rounds: where each round's time went

    def add(self, seconds: float, tokens: int, cpu_s: float) -> None:
        self.seconds, self.tokens, self.cpu_s = self.seconds + seconds, self.tokens + tokens, self.cpu_s + cpu_s
        self.rates.append(round(tokens / seconds, 1))
        self.cpu_ms_per_1k_rounds.append(round(1e6 * cpu_s / max(1, tokens), 2))

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    def cpu_ms_per_1k(self) -> float:
        return round(1e6 * self.cpu_s / max(1, self.tokens), 2)


def measure_rounds(stack, load: LoadGenerator, resident: ResidentEngine, workloads: list[list[list[Job]]]
                   ) -> tuple[Tally, Tally, int]:
    """Each workload given to both paths, in alternating order.

    Both engines stay loaded side by side (neither runs while the other is timed), so the two paths are timed
    minutes, not a model load, apart: a shared GPU host drifts between single runs of the same engine.
    Every workload's prompts are new to both engines (no prefix-cache head start for either).
    """
    worker_pid = next(p.popen.pid for p in stack.procs if p.name == "worker")
    api, direct, failed = Tally(), Tally(), 0
    for r, slots in enumerate(workloads):
        for path in (("api", "direct") if r % 2 == 0 else ("direct", "api")):
            if path == "direct":
                direct.add(*directly(resident, slots))
                continue
            cpu = cpu_seconds(worker_pid, children=False)  # its engine core is another process
            result = load.slots(slots)
            api.add(result.seconds, result.tokens, cpu_seconds(worker_pid, children=False) - cpu)
            api.timelines.append(job_timeline(stack.redis_url, result.job_ids))
            failed += result.failed
    return api, direct, failed


def run(options: P1Options) -> Iterator[dict]:
    """Yields each figure as soon as it is known, so a later failure (or time limit) keeps the earlier ones."""
    from maoocr.engines.demo_model import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="maoocr-p1-"))
    model_path = options.model_path or str(build_demo_model(work / "model"))
    model = {"max_model_len": options.max_model_len, "max_num_seqs": max(64, options.concurrency),
             "load_format": options.load_format, **options.extra_model}
    if options.gpu:
        # Two engines share the GPU (the worker's and the direct one), each with the same fixed share.
        model.setdefault("gpu_memory_utilization", GPU_SHARE)
    # Both paths are warmed with a full-size round first: a serving worker's threads and Redis connections exist
    # already, and the engine has seen the batch shape (a cold first round penalises the API path).
    # Other prompts than the measured ones, so the engine's prefix cache gives neither path a head start.
    warmup = prompts(options, first=options.concurrency)
    client_processes = options.client_processes or min(8, os.cpu_count() or 1)
    common = {"concurrency": options.concurrency, "max_tokens": options.max_tokens,
              "prompt_words": options.prompt_words, "device": "gpu" if options.gpu else "cpu",
              "stream_interval": options.extra_model.get("stream_interval", "engine default"),
              "api": api_server(options.api_workers),
              "rounds": options.rounds, "warm_up": "one full-size round per path",
              "intake": "stock" if options.stock_intake else "batched",
              "client_processes": client_processes,
              **({"gpu_memory_utilization": model["gpu_memory_utilization"]} if options.gpu else {})}
    redis_proc, redis_url = start_redis(work / "redis")
    stack = resident = load = None
    try:
        stack = start_stack(work, redis_url, model_path, ["--gpu", "0"] if options.gpu else ["--cpu"], model=model,
                            api_workers=options.api_workers,
                            api_threads=options.concurrency // max(1, options.api_workers) + 32,
                            log_level=BENCH_LOG_LEVEL,
                            env={"MAOOCR_WORKER__BATCHED_INTAKE": "false"} if options.stock_intake else None)
        resident = ResidentEngine(stack.config, gpu=options.gpu)
        load = LoadGenerator(stack.base_url, client_processes)
        load.round(warmup, options.max_tokens)
        directly(resident, burst(warmup, options.max_tokens))
        # Prompt sets 0 and 1 are the warm-ups'; each round takes the next.
        bursts = [burst(prompts(options, first=(r + 2) * options.concurrency), options.max_tokens)
                  for r in range(options.rounds)]
        api, direct, api_failed = measure_rounds(stack, load, resident, bursts)
        next_set = (options.rounds + 2) * options.concurrency
        staggered = None
        if api.timelines[-1]:
            # Fresh prompts again: the rounds' are in the direct engine's prefix cache now.
            staggered = directly(resident, burst(prompts(options, first=next_set), options.max_tokens),
                                 api.timelines[-1]["start_offsets"])
        next_set += options.concurrency
        yield from burst_figures(api, direct, api_failed, staggered, common)
        if options.sustained:
            per_round = options.concurrency * options.sustained
            sustained = measure_rounds(stack, load, resident, [sustained_slots(options, next_set + r * per_round)
                                                               for r in range(options.sustained_rounds)])
            yield from sustained_figures(options, *sustained, common)
    finally:
        if load is not None:
            load.close()
        if resident is not None:
            resident.close()
        if stack is not None:
            stack.stop()
        redis_proc.stop()
    if options.direct_every_token:
        wait_for_free_gpu(options.gpu)
        every = ResidentEngine(stack_config(work), gpu=options.gpu, stream_interval=1)
        try:
            directly(every, burst(warmup, options.max_tokens))
            seconds, tokens, _ = directly(every, burst(prompts(options), options.max_tokens))
        finally:
            every.close()
        yield {"metric": "p1_direct_every_token_output_tok_s", "value": round(tokens / seconds, 1),
               "seconds": round(seconds, 3), "note": "the engine directly with stream_interval 1 (after the rounds)",
               **common}
        yield {"metric": "p1_api_vs_direct_every_token_ratio", "value": round(api.rate / (tokens / seconds), 3),
               **common}
    if options.offline:
        wait_for_free_gpu(options.gpu)
        offline = offline_generate(stack_config(work), prompts(options), options.max_tokens)
        yield {"metric": "p1_offline_output_tok_s", **offline, **common}
        yield {"metric": "p1_api_vs_offline_ratio", "value": round(api.rate / offline["value"], 3), **common}


def burst_figures(api: Tally, direct: Tally, failed: int, staggered: tuple[float, int, float] | None, common: dict
                  ) -> Iterator[dict]:
    yield {"metric": "p1_api_output_tok_s", "value": round(api.rate, 1), "tokens": api.tokens,
           "seconds": round(api.seconds, 3), "per_round": api.rates, "failed_requests": failed, **common}
    # The front end's own CPU (its engine core is another process): the queue's per-token cost shows here first.
    yield {"metric": "p1_front_end_cpu_ms_per_1k_tokens", "value": api.cpu_ms_per_1k(), "worker": api.cpu_ms_per_1k(),
           "direct": direct.cpu_ms_per_1k(), "worker_per_round": api.cpu_ms_per_1k_rounds,
           "direct_per_round": direct.cpu_ms_per_1k_rounds,
           "note": "CPU of the worker process (API rounds) / of the direct rounds' process, engine cores excluded",
           **common}
    timelines = [{k: v for k, v in t.items() if k != "start_offsets"} for t in api.timelines]
    yield {"metric": "p1_api_job_timeline_s", "value": timelines[-1].get("queue_wait_p50"), **timelines[-1],
           "per_round": timelines, "note": "value and fields: the last API round", **common}
    yield {"metric": "p1_direct_output_tok_s", "value": round(direct.rate, 1), "tokens": direct.tokens,
           "seconds": round(direct.seconds, 3), "per_round": direct.rates, **common}
    if staggered:
        yield {"metric": "p1_direct_staggered_output_tok_s", "value": round(staggered[1] / staggered[0], 1),
               "seconds": round(staggered[0], 3), "note": "prompts arrive when the last API round's jobs started",
               **common}
    per_round = [round(a / d, 3) for a, d in zip(api.rates, direct.rates)]
    yield {"metric": "p1_batching_ratio", "value": round(api.rate / direct.rate, 3), "goal": ">= 0.90",
           "per_round": per_round, "median_round": sorted(per_round)[len(per_round) // 2], **common}


def sustained_figures(options: P1Options, api: Tally, direct: Tally, failed: int, common: dict) -> Iterator[dict]:
    shape = {"jobs_per_slot": options.sustained, "sustained_rounds": options.sustained_rounds,
             "max_tokens_range": [options.max_tokens // 2, options.max_tokens * 3 // 2]}
    yield {"metric": "p1_sustained_api_output_tok_s", "value": round(api.rate, 1), "tokens": api.tokens,
           "seconds": round(api.seconds, 3), "per_round": api.rates, "failed_requests": failed,
           "queue_wait_p50_per_round": [t.get("queue_wait_p50") for t in api.timelines],
           "queue_wait_max_per_round": [t.get("queue_wait_max") for t in api.timelines],
           "front_end_cpu_ms_per_1k_tokens": api.cpu_ms_per_1k(), **shape, **common}
    yield {"metric": "p1_sustained_direct_output_tok_s", "value": round(direct.rate, 1), "tokens": direct.tokens,
           "seconds": round(direct.seconds, 3), "per_round": direct.rates,
           "front_end_cpu_ms_per_1k_tokens": direct.cpu_ms_per_1k(), **shape, **common}
    per_round = [round(a / d, 3) for a, d in zip(api.rates, direct.rates)]
    yield {"metric": "p1_sustained_ratio", "value": round(api.rate / direct.rate, 3), "per_round": per_round,
           "note": "each slot sends its next job when the previous one is answered; not P1's burst definition",
           **shape, **common}


def job_timeline(redis_url: str, job_ids: list[str]) -> dict:
    """Where an API round's time went, from its job records: queue wait (created → started) and run time
    (started → finished). Tells a slow queue from a slow engine."""
    import redis

    from maoocr.store.keys import JOB_KEY

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(JOB_KEY.format(job_id), "created_at", "started_at", "finished_at")
        rows = sorted(tuple(float(v) for v in r) for r in pipe.execute() if all(r))
    if not rows:
        return {}
    end = max(f for _, _, f in rows)
    waits = sorted(s - c for c, s, _ in rows)
    runs = sorted(f - s for _, s, f in rows)
    first_created = min(c for c, _, _ in rows)

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"jobs": len(rows), "queue_wait_p50": pct(waits, 0.5), "queue_wait_max": pct(waits, 1.0),
            "last_created_after_s": round(max(c for c, _, _ in rows) - first_created, 3),
            "last_started_after_s": round(max(s for _, s, _ in rows) - first_created, 3),
            "run_p50": pct(runs, 0.5), "run_max": pct(runs, 1.0),
            "last_finished_after_s": round(end - first_created, 3),
            "start_offsets": [round(s - first_created, 4) for _, s, _ in rows]}


def stack_config(work: Path) -> Path:
    return work / "configs" / "maoocr.yaml"


def offline_generate(config: Path, texts: list[str], max_tokens: int) -> dict:
    """`vllm.LLM.generate` on all prompts at once, in a fresh process (its own engine, nothing else running)."""
    # The figure comes back in a file: vLLM writes its own log lines to stdout.
    result = config.parent / "offline_result.json"
    payload = json.dumps({"config": str(config), "texts": texts, "max_tokens": max_tokens, "out": str(result)})
    subprocess.run([sys.executable, "-m", "bench.offline_llm"], input=payload, text=True, check=True)
    return json.loads(result.read_text())
