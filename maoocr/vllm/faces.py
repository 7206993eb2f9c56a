"""Thin faces with the published `maoocr.vllm` names over MaoOCR's pieces; each says which piece it stands for.

| name                       | stands for                                                                 |
|----------------------------|----------------------------------------------------------------------------|
| VLLMServiceManager         | `LocalEngines`: resident engines of configured models, started and stopped here |
| MultiInterfaceAPIAdapter   | the OpenAI / REST request models → `GenerationParams` (+ the server's checks) |
| VLLMComplexityAnalyzer     | `maoocr.pipeline.vlm_analysis.VLMComplexityAnalyzer`                        |
| VLLMStrategySelector       | `maoocr.pipeline.llm_strategy.LLMStrategySelector`                          |
| VLLMMultimodalProcessor    | one image + question → the model's answer, through any `Generate`           |
| MemoryOptimizer            | `maoocr.engines.memory`: GPUs from pynvml, engine settings from free memory |
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from maoocr.config import ModelConfig, Settings, load_settings
from maoocr.engines.memory import EngineSettings, GpuInfo, derive_engine_settings, read_gpus
from maoocr.generation.call import Generate, image_question
from maoocr.generation.local import LocalEngines
from maoocr.generation.validate import validate_params
from maoocr.pipeline.llm_strategy import LLMStrategySelector
from maoocr.protocol.api import GenerateRequest
from maoocr.protocol.generation import GenerationParams, GenerationResult
from maoocr.protocol.openai import DEFAULT_MAX_TOKENS, ChatCompletionRequest, CompletionRequest

VLLMStrategySelector = LLMStrategySelector


class VLLMServiceManager(LocalEngines):
    """Starts and stops resident vLLM engines of configured models in this process; a `Generate` callable.

    `VLLMServiceManager.from_config("configs/maoocr.yaml").start()` loads the default model; `start([...])`
    others. For serving over HTTP, run workers instead (`maoocr worker`): they hold the same engines.
    """

    @classmethod
    def from_config(cls, path: str | Path | None = None, force_cpu: bool = False) -> "VLLMServiceManager":
        return cls(load_settings(path), force_cpu=force_cpu)

    def start(self, names: list[str] | None = None) -> "VLLMServiceManager":  # type: ignore[override]
        super().start(names if names is not None else [self.settings.default_model])
        return self

    def stop(self) -> None:
        self.shutdown()

    def generate(self, params: GenerationParams, timeout_s: float = 600.0) -> GenerationResult:
        return self(params, timeout_s)


class MultiInterfaceAPIAdapter:
    """The request bodies MaoOCR's API accepts, turned into the one `GenerationParams` every engine takes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def to_params(self, interface: Literal["chat", "completion", "generate"], body: dict[str, Any]) -> GenerationParams:
        """Validate `body` as the interface's request (pydantic errors name the field) and the server's limits."""
        request = {"chat": ChatCompletionRequest, "completion": CompletionRequest,
                   "generate": GenerateRequest}[interface].model_validate(body)
        params = request.to_params(self.settings.default_model, DEFAULT_MAX_TOKENS)
        validate_params(params, self.settings)
        return params

    def chat(self, body: dict[str, Any]) -> GenerationParams:
        return self.to_params("chat", body)

    def completion(self, body: dict[str, Any]) -> GenerationParams:
        return self.to_params("completion", body)

    def generate(self, body: dict[str, Any]) -> GenerationParams:
        return self.to_params("generate", body)


class VLLMMultimodalProcessor:
    """Image + question → the model's answer (document understanding), through any `Generate` callable."""

    def __init__(self, model: str, generate: Generate, *, max_tokens: int = 512, max_side: int = 1536,
                 timeout_s: float = 120.0) -> None:
        self.model = model
        self.generate = generate
        self.max_tokens = max_tokens
        self.max_side = max_side
        self.timeout_s = timeout_s

    def answer(self, image: Image.Image, question: str) -> GenerationResult:
        params = GenerationParams(model=self.model, messages=image_question(image, question, self.max_side),
                                  max_tokens=self.max_tokens, temperature=0.0)
        return self.generate(params, self.timeout_s)

    def ask(self, image: Image.Image, question: str) -> str:
        return self.answer(image, question).text

    async def ask_async(self, image: Image.Image, question: str) -> str:
        return await asyncio.to_thread(self.ask, image, question)


class MemoryOptimizer:
    """GPUs as pynvml sees them, and the engine settings a model gets from their free memory."""

    def gpus(self) -> list[GpuInfo]:
        return read_gpus()

    def plan(self, model: ModelConfig, force_cpu: bool = False, cpu_max_num_seqs: int = 64) -> EngineSettings:
        return derive_engine_settings(model, read_gpus(), force_cpu=force_cpu, cpu_max_num_seqs=cpu_max_num_seqs)
