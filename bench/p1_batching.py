"""P1: does vLLM's continuous batching survive the queue?

N concurrent generation jobs through API → Redis → worker → engine, against the same prompts given to the
same engine class directly (AsyncLLM), in the same run; optionally also against offline `LLM.generate`.
Prints output tokens/s of each and `p1_batching_ratio` (API / direct).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests

from tests.support.processes import start_redis, start_stack


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
    extra_model: dict = field(default_factory=dict)


def prompts(options: P1Options, count: int | None = None) -> list[str]:
    count = count or options.concurrency
    if options.prompt_words:
        from bench.dummy_model import word_prompts

        return word_prompts(count, options.prompt_words)
    return [f"Job {i}: summarise the scanned invoice number {1000 + i} for the archive" for i in range(count)]


def through_api(base_url: str, texts: list[str], max_tokens: int) -> tuple[float, int]:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=len(texts)))

    def one(prompt: str) -> int:
        reply = session.post(base_url + "/api/generate", timeout=1200, json={
            "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "wait": True})
        reply.raise_for_status()
        return reply.json()["usage"]["completion_tokens"]

    with ThreadPoolExecutor(len(texts)) as pool:
        start = time.perf_counter()
        tokens = sum(pool.map(one, texts))
        return time.perf_counter() - start, tokens


async def _direct(engine, texts: list[str], max_tokens: int, model: str) -> int:
    from maoocr.protocol.generation import GenerationParams

    async def one(i: int, prompt: str) -> int:
        params = GenerationParams(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, ignore_eos=True)
        tokens = 0
        async for step in engine.generate(params, f"direct-{i}-{time.monotonic_ns()}"):
            tokens += sum(d.token_count for d in step.deltas)
        return tokens

    return sum(await asyncio.gather(*(one(i, p) for i, p in enumerate(texts))))


def directly(config: Path, texts: list[str], max_tokens: int, warmup: list[str], gpu: bool) -> tuple[float, int]:
    from maoocr.config import load_settings
    from maoocr.engines.factory import create_engine, plan_engine

    settings = load_settings(config, env={})
    name = settings.default_model
    engine = create_engine(settings, name, plan_engine(settings, name, force_cpu=not gpu))

    async def run() -> tuple[float, int]:
        await engine.start()
        try:
            await _direct(engine, warmup, max_tokens, name)
            start = time.perf_counter()
            tokens = await _direct(engine, texts, max_tokens, name)
            return time.perf_counter() - start, tokens
        finally:
            await engine.shutdown()

    return asyncio.run(run())


def run(options: P1Options) -> Iterator[dict]:
    """Yields each figure as soon as it is known, so a later failure (or time limit) keeps the earlier ones."""
    from maoocr.engines.demo_model import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="maoocr-p1-"))
    model_path = options.model_path or str(build_demo_model(work / "model"))
    model = {"max_model_len": options.max_model_len, "max_num_seqs": max(64, options.concurrency),
             "load_format": options.load_format, **options.extra_model}
    texts, warmup = prompts(options), prompts(options, 4)
    redis_proc, redis_url = start_redis(work / "redis")
    stack = None
    try:
        stack = start_stack(work, redis_url, model_path, ["--gpu", "0"] if options.gpu else ["--cpu"], model=model)
        through_api(stack.base_url, warmup, options.max_tokens)
        api_s, api_tokens = through_api(stack.base_url, texts, options.max_tokens)
        stack.stop()  # free the cores (or the GPU) for the direct run
        stack = None
        wait_for_free_gpu(options.gpu)
        direct_s, direct_tokens = directly(stack_config(work), texts, options.max_tokens, warmup, options.gpu)
    finally:
        if stack is not None:
            stack.stop()
        redis_proc.stop()
    api_rate, direct_rate = api_tokens / api_s, direct_tokens / direct_s
    common = {"concurrency": options.concurrency, "max_tokens": options.max_tokens,
              "prompt_words": options.prompt_words, "device": "gpu" if options.gpu else "cpu"}
    yield {"metric": "p1_api_output_tok_s", "value": round(api_rate, 1), "tokens": api_tokens,
           "seconds": round(api_s, 3), **common}
    yield {"metric": "p1_direct_output_tok_s", "value": round(direct_rate, 1), "tokens": direct_tokens,
           "seconds": round(direct_s, 3), **common}
    yield {"metric": "p1_batching_ratio", "value": round(api_rate / direct_rate, 3), "goal": ">= 0.90", **common}
    if options.offline:
        wait_for_free_gpu(options.gpu)
        offline = offline_generate(stack_config(work), texts, options.max_tokens)
        yield {"metric": "p1_offline_output_tok_s", **offline, **common}
        yield {"metric": "p1_api_vs_offline_ratio", "value": round(api_rate / offline["value"], 3), **common}


def stack_config(work: Path) -> Path:
    return work / "configs" / "maoocr.yaml"


def offline_generate(config: Path, texts: list[str], max_tokens: int) -> dict:
    """`vllm.LLM.generate` on all prompts at once, in a fresh process (its own engine, nothing else running)."""
    # The figure comes back in a file: vLLM writes its own log lines to stdout.
    result = config.parent / "offline_result.json"
    payload = json.dumps({"config": str(config), "texts": texts, "max_tokens": max_tokens, "out": str(result)})
    subprocess.run([sys.executable, "-m", "bench.offline_llm"], input=payload, text=True, check=True)
    return json.loads(result.read_text())


def wait_for_free_gpu(gpu: bool, timeout_s: float = 120) -> None:
    """An engine's GPU memory is released when its engine-core process exits; wait for that before the next."""
    if not gpu:
        return
    from maoocr.engines.memory import read_gpus

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        gpu0 = read_gpus()[0]
        if gpu0.free_mb > 0.9 * gpu0.total_mb:
            return
        time.sleep(1)
