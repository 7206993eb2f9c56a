"""LLM engines: one interface (`LLMEngine`), a vLLM implementation, and the GPU memory optimizer."""

from maoocr.engines.base import ChoiceDelta, EngineStep, LLMEngine, ModelInfo

__all__ = ["ChoiceDelta", "EngineStep", "LLMEngine", "ModelInfo"]
