"""Offline `vllm.LLM.generate` on a batch of prompts: the engine's best case, for P1's comparison.

Reads `{"config", "texts", "max_tokens"}` on stdin; prints `{"value": tok/s, "tokens", "seconds"}`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    request = json.loads(sys.stdin.read())
    from maoocr.config import load_settings
    from maoocr.engines.factory import plan_engine, resolve_model_path
    from maoocr.engines.vllm_engine import prepare_vllm_environment

    settings = load_settings(request["config"], env={})
    name = settings.default_model
    plan = plan_engine(settings, name)
    prepare_vllm_environment(plan.device)
    from vllm import LLM, SamplingParams

    model = settings.model(name)
    kwargs = dict(model=resolve_model_path(settings, name), tokenizer=model.tokenizer, max_model_len=model.max_model_len,
                  max_num_seqs=plan.max_num_seqs, load_format=model.load_format, enforce_eager=plan.enforce_eager,
                  dtype=model.dtype)
    if plan.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = plan.gpu_memory_utilization
    if plan.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = plan.max_num_batched_tokens
    llm = LLM(**kwargs)
    sampling = SamplingParams(max_tokens=request["max_tokens"], temperature=0, ignore_eos=True)
    llm.generate(request["texts"][:4], sampling, use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outputs = llm.generate(request["texts"], sampling, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    figure = {"value": round(tokens / seconds, 1), "tokens": tokens, "seconds": round(seconds, 3)}
    Path(request["out"]).write_text(json.dumps(figure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
