"""The one LLM engine interface: many concurrent requests, streamed deltas, abort, model info."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import AsyncIterator

from pydantic import BaseModel, ConfigDict

from maoocr.protocol.generation import GenerationParams, Usage


# Plain slotted dataclasses, not pydantic: these are made once per token inside the process, never on a wire.
@dataclass(slots=True)
class ChoiceDelta:
    index: int = 0
    text: str = ""
    token_count: int = 0
    finish_reason: str | None = None


@dataclass(slots=True)
class EngineStep:
    """What one engine step produced for one request: new text per choice; usage once it is finished."""

    deltas: list[ChoiceDelta]
    finished: bool = False
    usage: Usage | None = None


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    model_path: str
    model_type: str
    max_model_len: int
    max_num_seqs: int
    device: str
    engine: str
    settings: dict = {}


class LLMEngine(ABC):
    """An engine that serves many requests at once. Implementations must be safe to call from one event loop
    with many concurrent `generate` iterations (that is what keeps continuous batching alive)."""

    @abstractmethod
    async def start(self) -> None:
        """Load the model. Called once per worker, never per job."""

    @abstractmethod
    def generate(self, params: GenerationParams, request_id: str) -> AsyncIterator[EngineStep]:
        """Stream one request. Raises ContextLengthExceeded / InvalidRequest before any output for bad input."""

    @abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a running request; its `generate` iteration ends with finish_reason 'abort'."""

    @abstractmethod
    def info(self) -> ModelInfo:
        ...

    @abstractmethod
    def load(self) -> dict[str, int]:
        """Requests running and waiting right now (for heartbeats and metrics)."""

    def dead(self) -> bool:
        """True once the engine can serve nothing more (its engine process died): the host reloads it."""
        return False

    @abstractmethod
    async def shutdown(self) -> None:
        ...
