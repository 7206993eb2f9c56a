"""One blocking question to a model, the way pipeline code asks it: `generate(params, timeout_s) -> GenerationResult`.

The OCR pipeline's VLM pieces (VLM OCR, VLM complexity analysis, LLM strategy selection) take such a callable, so
the same code runs in-process on a resident engine (`maoocr.generation.local.LocalEngines`) and inside the OCR
worker as a generation job on the model's queue (`QueuedGeneration`, below), without knowing which.
"""

from __future__ import annotations

import base64
import io
import logging
from typing import Protocol

from PIL import Image

from maoocr.config import Settings
from maoocr.errors import EngineError, MaoOCRError
from maoocr.generation.submit import submit_generation, wait_generation
from maoocr.priorities import task_priority
from maoocr.protocol.generation import ChatMessage, ContentPart, GenerationParams, GenerationResult
from maoocr.store.jobs import JobStore
from maoocr.store.streams import StreamStore
from maoocr.tasks import TaskMessage

log = logging.getLogger(__name__)


class Generate(Protocol):
    def __call__(self, params: GenerationParams, timeout_s: float) -> GenerationResult:
        """The finished answer; raises MaoOCRError (or TimeoutError) when there is none."""


class QueuedGeneration:
    """A generation job on the model's queue, waited for on its job record (used by the OCR worker).

    The job is a normal generation job: it shows in `GET /v1/jobs/<id>`, streams, and can be cancelled.
    On timeout it is cancelled, so a busy VLM worker does not spend time on an answer nobody waits for.
    """

    def __init__(self, settings: Settings, jobs: JobStore, streams: StreamStore, message: TaskMessage) -> None:
        self.settings = settings
        self.jobs = jobs
        self.streams = streams
        self.message = message  # builds the task's broker message (maoocr.tasks)

    def __call__(self, params: GenerationParams, timeout_s: float) -> GenerationResult:
        return self.collect(self.send(params), params.model, timeout_s)

    def send(self, params: GenerationParams) -> str:
        """The question queued as a generation job, at the priority of the task asking it; its job id. `collect`
        may run in another process."""
        if params.priority is None and task_priority.get() is not None:
            params = params.model_copy(update={"priority": task_priority.get()})
        return submit_generation(self.settings, self.jobs, params, self.message).id

    def collect(self, job_id: str, model: str, timeout_s: float) -> GenerationResult:
        try:
            return wait_generation(self.jobs, job_id, max(0.0, timeout_s))
        except TimeoutError:
            self.jobs.cancel(job_id, self.streams)
            raise TimeoutError(f"no answer from model {model!r} within the time limit "
                               f"(job {job_id} cancelled)") from None


def image_data_url(image: Image.Image, max_side: int | None = None) -> str:
    """A PNG data URL of the page, its long side reduced to `max_side` px (image tokens grow with pixels)."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    # Still lossless; level 3 encodes a page about twice as fast as the default 6, and smaller (an A4 page at
    # 1,536 px: ~40 against ~75 ms, ~390 against ~500 KiB): the OCR processes encode every VLM page.
    image.save(buf, format="PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_question(image: Image.Image, question: str, max_side: int | None = None,
                   system: str | None = None) -> list[ChatMessage]:
    """Chat messages with one image part followed by the question (the order VLM chat templates expect)."""
    messages = [ChatMessage(role="system", content=system)] if system else []
    messages.append(ChatMessage(role="user", content=[
        ContentPart(type="image_url", image_url={"url": image_data_url(image, max_side)}),
        ContentPart(type="text", text=question)]))
    return messages


def describe_failure(exc: BaseException) -> str:
    """One line for a strategy_reason or fallback_reason: the error's code and message, or its type."""
    if isinstance(exc, MaoOCRError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return f"timeout: {exc}"
    return f"{type(exc).__name__}: {exc}"


def answer_text(result: GenerationResult, what: str, cut_is_whole: bool = False) -> str:
    """The first choice's text; an answer cut at max_tokens is a failure (it is incomplete by definition) unless
    `cut_is_whole` (an answer of fixed length asked for with ignore_eos)."""
    choice = result.choices[0] if result.choices else None
    if choice is None:
        raise EngineError(f"{what}: the model returned no choice")
    if choice.finish_reason == "length" and not cut_is_whole:
        raise EngineError(f"{what}: the answer was cut at max_tokens ({choice.completion_tokens} tokens)",
                          code="answer_truncated")
    if choice.finish_reason not in (None, "stop", "length"):
        raise EngineError(f"{what}: the answer ended with finish_reason {choice.finish_reason!r}")
    return choice.text
