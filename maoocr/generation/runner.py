"""One generation job, start to end: claim the record, stream the engine's deltas, store the result once."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from maoocr.engines.base import LLMEngine
from maoocr.errors import MaoOCRError
from maoocr.jobs import JobStore, error_fields
from maoocr.protocol.generation import Choice, GenerationParams, GenerationResult, StreamChunk, Usage
from maoocr.streams import StreamWriter

log = logging.getLogger(__name__)


@dataclass
class _Accumulated:
    texts: dict[int, list[str]] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    reasons: dict[int, str | None] = field(default_factory=dict)
    usage: Usage | None = None
    cancelled: bool = False


class GenerationRunner:
    """Job lifecycle around the engine. `claim`/`finish` are blocking Redis calls made on the caller's thread;
    `stream` is the coroutine that runs on the engine's event loop and never blocks it."""

    def __init__(self, engine: LLMEngine, jobs: JobStore, writer: StreamWriter) -> None:
        self.engine = engine
        self.jobs = jobs
        self.writer = writer
        # Cancels heard on the control channel, kept (bounded) even for jobs not started yet on this worker,
        # so a cancel that races the job's start still stops it.
        self.cancel_requested: OrderedDict[str, None] = OrderedDict()
        self._requests: dict[str, str] = {}  # job id → engine request id, while streaming

    def request_cancel(self, job_id: str) -> str | None:
        """Remember a cancel; returns the engine request to abort if the job is streaming here."""
        self.cancel_requested[job_id] = None
        while len(self.cancel_requested) > 10_000:
            self.cancel_requested.popitem(last=False)
        return self._requests.get(job_id)

    def claim(self, job_id: str) -> bool:
        """queued → running. A redelivered job (its worker died) is running already and is run again;
        a finished or cancelled job is not run twice."""
        record = self.jobs.get(job_id)
        moved, before = self.jobs.transition(job_id, ("queued", "running"), "running", started_at=time.time(),
                                             attempts=record.attempts + 1)
        if not moved:
            log.info("job=%s skipped: already %s", job_id, before)
        return moved

    async def stream(self, job_id: str, params: GenerationParams) -> _Accumulated:
        acc = _Accumulated()
        request_id = f"{job_id}-{time.monotonic_ns()}"
        self._requests[job_id] = request_id
        try:
            async for step in self.engine.generate(params, request_id):
                for delta in step.deltas:
                    acc.texts.setdefault(delta.index, []).append(delta.text)
                    acc.tokens[delta.index] = acc.tokens.get(delta.index, 0) + delta.token_count
                    if delta.finish_reason is not None:
                        acc.reasons[delta.index] = delta.finish_reason
                    if delta.text or delta.finish_reason:
                        self.writer.publish(StreamChunk(job_id=job_id, delta=delta.text, index=delta.index,
                                                        finish_reason=delta.finish_reason))
                if step.finished:
                    acc.usage = step.usage
                if job_id in self.cancel_requested:
                    acc.cancelled = True
                    await self.engine.abort(request_id)
                    break
        finally:
            self._requests.pop(job_id, None)
        acc.cancelled = acc.cancelled or job_id in self.cancel_requested
        return acc

    def finish(self, job_id: str, params: GenerationParams, acc: _Accumulated | None,
               exc: BaseException | None) -> None:
        """Store the outcome (only if the job is still ours) and end the stream."""
        self.cancel_requested.pop(job_id, None)
        if exc is not None:
            level = logging.INFO if isinstance(exc, MaoOCRError) else logging.ERROR
            log.log(level, "job=%s failed: %s", job_id, exc, exc_info=not isinstance(exc, MaoOCRError))
            fields = error_fields(exc)
            moved, before = self.jobs.transition(job_id, ("running",), "failed", **fields)
            self._end(job_id, "cancelled" if before == "cancelled" else "error", None,
                      None if before == "cancelled" else fields["error"])
            return
        assert acc is not None
        usage = acc.usage or Usage(completion_tokens=sum(acc.tokens.values()))
        result = GenerationResult(
            model=params.model, usage=usage,
            choices=[Choice(index=i, text="".join(acc.texts.get(i, [])), finish_reason=acc.reasons.get(i),
                            completion_tokens=acc.tokens.get(i, 0)) for i in range(params.n)])
        moved, before = (False, "cancelled") if acc.cancelled else self.jobs.transition(
            job_id, ("running",), "succeeded", result=result.model_dump())
        reason = result.choices[0].finish_reason if moved else before
        self._end(job_id, reason, usage, None)

    def _end(self, job_id: str, reason: str | None, usage: Usage | None, error: dict | None) -> None:
        self.writer.publish(StreamChunk(job_id=job_id, finished=True, finish_reason=reason, usage=usage,
                                        event="end", error=error))
