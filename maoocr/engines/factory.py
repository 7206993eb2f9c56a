"""Builds the engine for a configured model: resolves weights, asks the memory optimizer, picks the backend."""

from __future__ import annotations

import logging
from pathlib import Path

from maoocr.config import Settings
from maoocr.engines.base import LLMEngine
from maoocr.engines.demo_model import build_demo_model
from maoocr.engines.images import image_limits
from maoocr.engines.memory import EngineSettings, derive_engine_settings, read_gpus
from maoocr.errors import ModelNotFound

log = logging.getLogger(__name__)


def resolve_model_path(settings: Settings, name: str) -> str:
    """The configured weights, or the locally built demo model when `model_path` is null."""
    model = settings.model(name)
    if model.model_path:
        return model.model_path
    path = build_demo_weights(settings, name)
    log.warning("model %r has no model_path: serving the tiny random demo model at %s; its answers are "
                "meaningless", name, path)
    return str(path)


def build_demo_weights(settings: Settings, name: str) -> Path:
    """The tiny random demo model that stands in for `name` (a VLM for a multimodal model), built once in data_dir."""
    if settings.model(name).model_type == "multimodal":
        from maoocr.engines.demo_vlm import build_demo_vlm

        return build_demo_vlm(Path(settings.data_dir) / "demo-vlm")
    return build_demo_model(Path(settings.data_dir) / "demo-model")


def plan_engine(settings: Settings, name: str, force_cpu: bool = False) -> EngineSettings:
    if settings.models is None or name not in settings.models.models:
        known = sorted(settings.models.models) if settings.models else []
        raise ModelNotFound(f"model {name!r} is not configured (known: {', '.join(known)})")
    return derive_engine_settings(settings.model(name), read_gpus(), force_cpu=force_cpu,
                                  cpu_max_num_seqs=settings.limits.worker_concurrency)


def create_engine(settings: Settings, name: str, plan: EngineSettings) -> LLMEngine:
    from maoocr.engines.vllm_engine import VLLMEngine, prepare_vllm_environment

    prepare_vllm_environment(plan.device, str(Path(settings.data_dir).resolve() / "vllm"))
    return VLLMEngine(name, settings.model(name), resolve_model_path(settings, name), plan,
                      image_limits(settings))
