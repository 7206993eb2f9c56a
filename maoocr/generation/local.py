"""Resident engines in this process (the library API's in-process mode): start them from the configuration and
answer `Generate` calls from any thread, each one a concurrent request on the engine's own event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

from maoocr.config import Settings
from maoocr.engines.base import LLMEngine
from maoocr.errors import ModelNotFound
from maoocr.protocol.generation import Choice, GenerationParams, GenerationResult, Usage

log = logging.getLogger(__name__)


async def collect(engine: LLMEngine, params: GenerationParams, request_id: str) -> GenerationResult:
    """Run one request to its end and gather its choices (what GenerationRunner does, minus jobs and streams)."""
    texts: dict[int, list[str]] = {}
    tokens: dict[int, int] = {}
    reasons: dict[int, str | None] = {}
    usage: Usage | None = None
    async for step in engine.generate(params, request_id):
        for delta in step.deltas:
            texts.setdefault(delta.index, []).append(delta.text)
            tokens[delta.index] = tokens.get(delta.index, 0) + delta.token_count
            if delta.finish_reason is not None:
                reasons[delta.index] = delta.finish_reason
        if step.finished:
            usage = step.usage
    return GenerationResult(model=params.model, usage=usage or Usage(completion_tokens=sum(tokens.values())),
                            choices=[Choice(index=i, text="".join(texts.get(i, [])), finish_reason=reasons.get(i),
                                            completion_tokens=tokens.get(i, 0)) for i in range(params.n)])


class LocalEngines:
    """Engines for configured models, loaded on first use (or by `start`) and kept until `shutdown`.

    One event-loop thread serves all of them; callers block on their own thread, so concurrent callers give an
    engine concurrent requests (continuous batching) exactly as in a worker.
    """

    def __init__(self, settings: Settings, force_cpu: bool = False) -> None:
        self.settings = settings
        self.force_cpu = force_cpu
        self._engines: dict[str, LLMEngine] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="maoocr-local-engines", daemon=True)
            self._thread.start()
        return self._loop

    def engine(self, name: str) -> LLMEngine:
        """The started engine of model `name` (loading it now if needed: seconds on CPU, minutes on a GPU)."""
        from maoocr.engines.factory import create_engine, plan_engine

        assert self.settings.models is not None
        if name not in self.settings.models.models:
            raise ModelNotFound(f"model {name!r} is not configured (known: "
                                f"{', '.join(sorted(self.settings.models.models))})")
        with self._lock:  # one load per model, however many threads ask
            engine = self._engines.get(name)
            if engine is None:
                plan = plan_engine(self.settings, name, force_cpu=self.force_cpu)
                engine = create_engine(self.settings, name, plan)
                asyncio.run_coroutine_threadsafe(engine.start(), self._ensure_loop()).result()
                self._engines[name] = engine
                log.info("local engine %s ready: %s", name, "; ".join(plan.reasons))
            return engine

    def start(self, names: list[str]) -> None:
        for name in names:
            self.engine(name)

    def running(self) -> dict[str, dict[str, Any]]:
        return {name: engine.info().model_dump() for name, engine in self._engines.items()}

    def __call__(self, params: GenerationParams, timeout_s: float) -> GenerationResult:
        engine = self.engine(params.model)
        loop = self._ensure_loop()
        request_id = f"local-{uuid.uuid4().hex}"
        future = asyncio.run_coroutine_threadsafe(collect(engine, params, request_id), loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            asyncio.run_coroutine_threadsafe(engine.abort(request_id), loop)
            raise TimeoutError(f"no answer from model {params.model!r} within {timeout_s:g} s") from None

    def shutdown(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        if self._loop is None:
            return
        for engine in engines:
            try:
                asyncio.run_coroutine_threadsafe(engine.shutdown(), self._loop).result(timeout=60)
            except Exception:  # shutting down anyway: one engine's error must not keep the others alive
                log.exception("engine shutdown failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

