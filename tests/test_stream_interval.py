"""The engine's stream_interval on real vLLM: a request's first token goes at once, then up to N tokens per
chunk, and the text is the same as when every token is its own chunk."""

from __future__ import annotations

import asyncio

import requests

from maoocr.engines.factory import create_engine, plan_engine
from maoocr.protocol.generation import GenerationParams

PROMPT = "Job 7: summarise the scanned invoice number 1007 for the archive"


def test_stream_interval_groups_tokens_without_changing_the_text(stack, stack_settings):
    name = stack_settings.default_model
    plan = plan_engine(stack_settings, name, force_cpu=True).model_copy(update={"stream_interval": 4})
    engine = create_engine(stack_settings, name, plan)
    params = GenerationParams(model=name, prompt=PROMPT, max_tokens=21, temperature=0, ignore_eos=True)

    async def run() -> tuple[list[int], str]:
        await engine.start()
        try:
            counts, text = [], []
            async for step in engine.generate(params, "interval-test"):
                counts.append(sum(d.token_count for d in step.deltas))
                text.append("".join(d.text for d in step.deltas))
            return counts, "".join(text)
        finally:
            await engine.shutdown()

    counts, text = asyncio.run(run())
    assert counts == [1, 4, 4, 4, 4, 4], counts  # first token alone, then groups of 4 (1 + 5 × 4 = 21)

    # The stack's worker streams every token (stream_interval 1 on CPU): same greedy text.
    every_token = requests.post(f"{stack.base_url}/api/generate", timeout=120, json={
        "prompt": PROMPT, "max_tokens": 21, "temperature": 0, "ignore_eos": True, "wait": True}).json()
    assert every_token["usage"]["completion_tokens"] == 21 and every_token["text"] == text
