"""Memory optimizer: reads the GPUs through pynvml and derives engine settings from free memory.

With no GPU (no driver, no device) it says so and picks CPU settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from maoocr.config import ModelConfig

MIB = 1024 * 1024
GPU_STREAM_INTERVAL = 8
GPU_BATCHED_TOKENS = 16384  # tokens per engine step on a GPU: what vLLM's offline LLM schedules (see below)


class GpuInfo(BaseModel):
    index: int
    name: str
    total_mb: int
    free_mb: int
    used_mb: int
    utilization_pct: int | None = None


class EngineSettings(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    device: str  # "cuda" or "cpu"
    gpu_memory_utilization: float | None
    max_num_seqs: int
    max_num_batched_tokens: int | None = None
    stream_interval: int = 1
    tensor_parallel_size: int
    quantization: str | None
    enforce_eager: bool
    reasons: list[str]


def read_gpus() -> list[GpuInfo]:
    """The GPUs this process may use (honours CUDA_VISIBLE_DEVICES); empty when there is no NVIDIA driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        indices = _visible_indices(pynvml.nvmlDeviceGetCount())
        gpus = []
        for i in indices:
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            try:
                util = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except pynvml.NVMLError:
                util = None
            gpus.append(GpuInfo(index=i, name=name.decode() if isinstance(name, bytes) else name,
                                total_mb=mem.total // MIB, free_mb=mem.free // MIB, used_mb=mem.used // MIB,
                                utilization_pct=util))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _visible_indices(count: int) -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    out = []
    for part in visible.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < count:
            out.append(int(part))
    return out


def weights_size_mb(model_path: str | None) -> int:
    """Size of the weight files on disk (0 when unknown, e.g. a hub id or dummy weights)."""
    if not model_path or not Path(model_path).is_dir():
        return 0
    total = sum(p.stat().st_size for p in Path(model_path).glob("*") if p.suffix in (".safetensors", ".bin", ".pt"))
    return total // MIB


def derive_engine_settings(model: ModelConfig, gpus: list[GpuInfo], force_cpu: bool = False,
                           cpu_max_num_seqs: int = 64) -> EngineSettings:
    """Engine settings from the model config and the GPUs' free memory. Explicit config values always win."""
    reasons: list[str] = []
    if force_cpu or not gpus:
        reasons.append("no GPU visible to pynvml: CPU settings" if not gpus else "CPU forced")
        return EngineSettings(device="cpu", gpu_memory_utilization=None,
                              max_num_seqs=model.max_num_seqs or cpu_max_num_seqs,
                              max_num_batched_tokens=model.max_num_batched_tokens,
                              stream_interval=model.stream_interval or 1, tensor_parallel_size=1,
                              quantization=model.quantization,
                              enforce_eager=True if model.enforce_eager is None else model.enforce_eager,
                              reasons=reasons)

    tp = min(model.tensor_parallel_size, len(gpus))
    if tp < model.tensor_parallel_size:
        reasons.append(f"tensor_parallel_size {model.tensor_parallel_size} > {len(gpus)} visible GPUs: using {tp}")
    used = sorted(gpus, key=lambda g: g.free_mb, reverse=True)[:tp]
    free = min(g.free_mb for g in used)
    total = min(g.total_mb for g in used)

    if model.gpu_memory_utilization is not None:
        util = model.gpu_memory_utilization
        reasons.append(f"gpu_memory_utilization {util} from config")
    else:
        # vLLM's fraction is of total memory; stay below what is actually free, with a 5 % margin.
        util = round(max(0.1, min(0.92, free / total - 0.05)), 2)
        reasons.append(f"gpu_memory_utilization {util}: {free} MiB free of {total} MiB")

    budget = util * total
    if model.max_num_seqs is not None:
        max_num_seqs = model.max_num_seqs
    else:
        max_num_seqs = 512 if budget >= 40_000 else 256 if budget >= 16_000 else 128 if budget >= 8_000 else 32
        reasons.append(f"max_num_seqs {max_num_seqs} for a {int(budget)} MiB budget")

    # The resident engine is a throughput server: schedule like vLLM's offline LLM (16384 tokens per step), not
    # like its async default (2048), which leaves much of a large GPU's throughput unused under many requests.
    max_num_batched_tokens = model.max_num_batched_tokens or max(GPU_BATCHED_TOKENS, model.max_model_len)

    # A busy GPU worker's front end is one Python process: a delta per request per engine step becomes its
    # bottleneck. Gathering a few tokens per chunk cuts that work; the first token still goes at once.
    stream_interval = model.stream_interval or GPU_STREAM_INTERVAL

    quantization = model.quantization
    weights = weights_size_mb(model.model_path)
    if quantization is None and weights and weights / tp > 0.8 * budget:
        quantization = "fp8"
        reasons.append(f"weights {weights} MiB over {tp} GPU(s) exceed 80 % of the budget: fp8 quantization")

    return EngineSettings(device="cuda", gpu_memory_utilization=util, max_num_seqs=max_num_seqs,
                          max_num_batched_tokens=max_num_batched_tokens, stream_interval=stream_interval,
                          tensor_parallel_size=tp, quantization=quantization,
                          enforce_eager=bool(model.enforce_eager), reasons=reasons)
