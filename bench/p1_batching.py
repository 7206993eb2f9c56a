"""P1: does vLLM's continuous batching survive the queue?

N concurrent generation jobs through API → Redis → worker → engine, against the same prompts given to the
same engine class directly, in the same run. Prints output tokens/s of each and `p1_batching_ratio`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.support.processes import start_redis, start_stack


def prompts(n: int) -> list[str]:
    return [f"Job {i}: summarise the scanned invoice number {1000 + i} for the archive" for i in range(n)]


def through_api(base_url: str, texts: list[str], max_tokens: int) -> tuple[float, int]:
    def one(prompt: str) -> int:
        reply = requests.post(base_url + "/api/generate", timeout=600, json={
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


def directly(config: Path, texts: list[str], max_tokens: int, warmup: list[str]) -> tuple[float, int]:
    from maoocr.config import load_settings
    from maoocr.engines.factory import create_engine, plan_engine

    settings = load_settings(config, env={})
    name = settings.default_model
    engine = create_engine(settings, name, plan_engine(settings, name, force_cpu=os.environ.get("P1_CPU") == "1"))

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


def run(concurrency: int = 32, max_tokens: int = 128, model_path: str | None = None,
        worker_args: list[str] | None = None) -> list[dict]:
    from maoocr.engines.demo_model import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="maoocr-p1-"))
    model_path = model_path or str(build_demo_model(work / "model"))
    texts, warmup = prompts(concurrency), prompts(4)
    redis_proc, redis_url = start_redis(work / "redis")
    stack = None
    try:
        stack = start_stack(work, redis_url, model_path, worker_args)
        through_api(stack.base_url, warmup, max_tokens)
        api_s, api_tokens = through_api(stack.base_url, texts, max_tokens)
        stack.stop()  # free the cores (or the GPU) for the direct run
        stack = None
        direct_s, direct_tokens = directly(work / "configs" / "maoocr.yaml", texts, max_tokens, warmup)
    finally:
        if stack is not None:
            stack.stop()
        redis_proc.stop()
    api_rate, direct_rate = api_tokens / api_s, direct_tokens / direct_s
    common = {"concurrency": concurrency, "max_tokens": max_tokens, "model": model_path}
    return [
        {"metric": "p1_api_output_tok_s", "value": round(api_rate, 1), "tokens": api_tokens,
         "seconds": round(api_s, 3), **common},
        {"metric": "p1_direct_output_tok_s", "value": round(direct_rate, 1), "tokens": direct_tokens,
         "seconds": round(direct_s, 3), **common},
        {"metric": "p1_batching_ratio", "value": round(api_rate / direct_rate, 3), "goal": ">= 0.90", **common},
    ]
