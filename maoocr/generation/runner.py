"""One generation job, start to end: claim the record, stream the engine's deltas, store the result once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from maoocr.engines.base import LLMEngine
from maoocr.errors import MaoOCRError
from maoocr.generation.resume import Resume
from maoocr.metrics import GENERATED_TOKENS, PROMPT_TOKENS, observe_latency, observe_queue_wait
from maoocr.protocol.generation import Choice, GenerationParams, GenerationResult, StreamChunk, Usage
from maoocr.store.jobs import TAKEN_OVER, JobStore, error_fields
from maoocr.store.streams import StreamWriter, TokenDelta
from maoocr.store.usage import count_cancelled_tokens

log = logging.getLogger(__name__)


@dataclass
class _Accumulated:
    texts: dict[int, list[str]] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    reasons: dict[int, str | None] = field(default_factory=dict)
    usage: Usage | None = None
    cancelled: bool = False
    requeue: bool = False  # aborted because the worker is stopping: hand the job back, don't finish it


class GenerationRunner:
    """Job lifecycle around the engine. `claim`/`finish` are blocking Redis calls made on the caller's thread;
    `stream` is the coroutine that runs on the engine's event loop and never blocks it."""

    def __init__(self, engine: LLMEngine, jobs: JobStore, writer: StreamWriter, stamp: bool = False) -> None:
        self.engine = engine
        self.jobs = jobs
        self.writer = writer
        self._wake_scheduled = False  # a writer wake is queued on the engine loop (see stream)
        self._created_at: dict[str, float] = {}  # job → its record's created_at, from the claim (for metrics)
        self.stamp = stamp  # settings.stream_timestamps: put the engine's emit time on each token chunk
        # Cancels heard on the control channel, kept (bounded) even for jobs not started yet on this worker,
        # so a cancel that races the job's start still stops it.
        self.cancel_requested: OrderedDict[str, None] = OrderedDict()
        self._requests: dict[str, str] = {}  # job id → engine request id, while streaming
        # Engine requests by phase, for heartbeats and /metrics; changed only on the engine's event loop.
        self.waiting = 0  # submitted, no output yet (queued in the engine or in prefill)
        self.running = 0  # producing tokens
        self.stopping = False  # set when the worker's shutdown grace is over: running requests are handed back
        self.drained: set[str] = set()  # jobs whose engine requests the shutdown aborted

    def drain(self) -> list[str]:
        """Stop: every streaming job is to be handed back. Returns the engine requests to abort."""
        self.stopping = True
        self.drained.update(self._requests)
        return list(self._requests.values())

    def request_cancel(self, job_id: str) -> str | None:
        """Remember a cancel; returns the engine request to abort if the job is streaming here."""
        self.cancel_requested[job_id] = None
        while len(self.cancel_requested) > 10_000:
            self.cancel_requested.popitem(last=False)
        return self._requests.get(job_id)

    BUSY = -1

    def claim(self, job_id: str, worker: str) -> int:
        """queued → running for `worker`: the attempt number, 0 when the job is not to be run (finished,
        cancelled) or BUSY when it is a redelivered copy of a job whose worker is alive (the caller waits).
        A running job whose worker died is taken over."""
        claim = self.jobs.claim(job_id, worker)
        attempt, before = claim.attempt, claim.before
        if attempt:
            self._created_at[job_id] = claim.created_at
            if before == "queued":
                observe_queue_wait("generation", claim.created_at)
            if attempt > 1:
                log.warning("job=%s attempt %d (was %s by %s)", job_id, attempt, before, claim.previous_worker)
            return attempt
        if before == "busy":
            return self.BUSY
        log.info("job=%s skipped: already %s", job_id, before)
        return 0

    def resume(self, job_id: str, attempt: int, params: GenerationParams) -> Resume | None:
        """For a second or later attempt: how to continue the stream the earlier ones left."""
        if attempt <= 1:
            return None
        self.writer.flush()
        resume = Resume.from_record(job_id, attempt, params, self.writer.store.replay(job_id))
        for chunk in resume.start():
            self.writer.publish(chunk)
        return resume

    def load(self) -> dict[str, int]:
        return {"running": self.running, "waiting": self.waiting}

    async def stream(self, job_id: str, params: GenerationParams, resume: Resume | None = None) -> _Accumulated:
        acc = _Accumulated()
        request_id = f"{job_id}-{time.monotonic_ns()}"
        self._requests[job_id] = request_id
        self.waiting += 1
        first = True
        publish = self.writer.publish
        try:
            async for step in self.engine.generate(params, request_id):
                if first:
                    first = False
                    self.waiting, self.running = self.waiting - 1, self.running + 1
                emitted_at = time.time() if self.stamp else None
                for delta in step.deltas:
                    acc.texts.setdefault(delta.index, []).append(delta.text)
                    acc.tokens[delta.index] = acc.tokens.get(delta.index, 0) + delta.token_count
                    if delta.finish_reason is not None:
                        acc.reasons[delta.index] = delta.finish_reason
                    if resume is not None:
                        for chunk in resume.feed(delta.index, delta.text, delta.finish_reason):
                            publish(chunk)
                    elif delta.text or delta.finish_reason:
                        publish(TokenDelta(job_id, delta.text, delta.index, delta.finish_reason, emitted_at),
                                wake=False)
                        self._wake_writer_after_this_pass()
                if step.finished:
                    acc.usage = step.usage
                if job_id in self.cancel_requested:
                    acc.cancelled = True
                    await self.engine.abort(request_id)
                    break
                if self.stopping and not step.finished:
                    acc.requeue = True
                    await self.engine.abort(request_id)
                    break
        finally:
            self._requests.pop(job_id, None)
            if first:
                self.waiting -= 1
            else:
                self.running -= 1
        acc.cancelled = acc.cancelled or job_id in self.cancel_requested
        # Aborted by the host's shutdown before its end: to be run again, not stored as done.
        ended = sum(1 for r in acc.reasons.values() if r and r != "abort") == params.n
        acc.requeue = not acc.cancelled and not ended and (acc.requeue or job_id in self.drained)
        self.drained.discard(job_id)
        return acc

    def _wake_writer_after_this_pass(self) -> None:
        """One engine step resumes every streaming job in the same pass of the event loop; the writer is woken
        once, after all of them have published (call_soon runs in the next pass), not once per job."""
        if not self._wake_scheduled:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake_writer)

    def _wake_writer(self) -> None:
        self._wake_scheduled = False
        self.writer.wake()

    def finish(self, job_id: str, params: GenerationParams, acc: _Accumulated | None,
               exc: BaseException | None, worker: str | None = None) -> None:
        """Store the outcome and end the stream, only if the job is still ours: with `worker` (the identity it
        was claimed under), a job another worker took over meanwhile is left to that worker."""
        self.cancel_requested.pop(job_id, None)
        if exc is not None:
            level = logging.INFO if isinstance(exc, MaoOCRError) else logging.ERROR
            log.log(level, "job=%s failed: %s", job_id, exc, exc_info=not isinstance(exc, MaoOCRError))
            fields = error_fields(exc)
            moved, before = self.jobs.transition(job_id, ("running",), "failed", fence=worker, **fields)
            if self._taken_over(job_id, before):
                return
            self._end(job_id, "cancelled" if before == "cancelled" else "error", None,
                      None if before == "cancelled" else fields["error"])
            self._observe_end(job_id, "failed" if moved else before)
            return
        assert acc is not None
        usage = acc.usage or Usage(completion_tokens=sum(acc.tokens.values()))
        GENERATED_TOKENS.labels(params.model).inc(usage.completion_tokens)
        PROMPT_TOKENS.labels(params.model).inc(usage.prompt_tokens)
        result = GenerationResult(
            model=params.model, usage=usage,
            choices=[Choice(index=i, text="".join(acc.texts.get(i, [])), finish_reason=acc.reasons.get(i),
                            completion_tokens=acc.tokens.get(i, 0)) for i in range(params.n)])
        moved, before = (False, "cancelled") if acc.cancelled else self.jobs.transition(
            job_id, ("running",), "succeeded", fence=worker, result=result.model_dump())
        if self._taken_over(job_id, before):
            return
        if before == "cancelled":  # the cancel ended the job (and counted it) before its tokens were known
            count_cancelled_tokens(self.jobs.redis, job_id, usage.prompt_tokens, usage.completion_tokens)
        reason = result.choices[0].finish_reason if moved else before
        self._end(job_id, reason, usage, None)
        self._observe_end(job_id, "succeeded" if moved else before)

    def _taken_over(self, job_id: str, before: str) -> bool:
        if before != TAKEN_OVER:
            return False
        # Its stream is the new attempt's too: this attempt's outcome and end chunk are dropped, not written.
        log.warning("job=%s was taken over by another worker while it ran here: this attempt's outcome is dropped",
                    job_id)
        self._created_at.pop(job_id, None)
        return True

    def _observe_end(self, job_id: str, status: str) -> None:
        created_at = self._created_at.pop(job_id, None)
        if created_at is not None:  # the record's own finished_at is a moment earlier: close enough for a histogram
            observe_latency("generation", status, created_at)

    def _end(self, job_id: str, reason: str | None, usage: Usage | None, error: dict | None) -> None:
        self.writer.publish(StreamChunk(job_id=job_id, finished=True, finish_reason=reason, usage=usage,
                                        event="end", error=error))
