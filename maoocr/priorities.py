"""Job priorities: 0 runs first, 9 last. The same numbers order the Redis queues (kombu's Redis transport keeps one
list per priority step, read highest first) and the engine (vLLM's priority scheduling: lower value first)."""

from __future__ import annotations

from bisect import bisect
from contextvars import ContextVar
from typing import Literal

from maoocr.config import PrioritySettings

# What a request may name: a number, or the server's default for interactive or bulk work.
RequestedPriority = int | Literal["interactive", "bulk"] | None

# The priority of the task this thread runs: a document's page steps set it so that the model calls they queue (VLM
# OCR, analysis, selection) wait and run at the document's priority.
task_priority: ContextVar[int | None] = ContextVar("task_priority", default=None)

# kombu's default `priority_steps`: priorities 0-2 share the queue's own list, 3-5 the next, and so on.
PRIORITY_STEPS = (0, 3, 6, 9)
# kombu's separator between a queue's name and its priority step in the list's key.
PRIORITY_SEP = "\x06\x16"


def queue_step(priority: int) -> int:
    """The kombu priority step a job of `priority` is queued at (kombu's own `Channel.priority`)."""
    return PRIORITY_STEPS[bisect(PRIORITY_STEPS, priority) - 1]


def queue_list(queue: str, priority: int) -> str:
    """The Redis list a job of `priority` waits in on `queue`."""
    step = queue_step(priority)
    return f"{queue}{PRIORITY_SEP}{step}" if step else queue


def queue_lists(queue: str) -> list[str]:
    """Every list of `queue`, most urgent first."""
    return [queue_list(queue, step) for step in PRIORITY_STEPS]


def job_priority(settings: PrioritySettings, requested: RequestedPriority, owner: str | None,
                 bulk: bool = False) -> int:
    """A new job's priority: the number it names, else its API key's default (interactive jobs), else the server's
    default for its kind of request ("bulk" and "interactive" name those defaults)."""
    if isinstance(requested, int):
        return requested
    if requested == "bulk" or (bulk and requested is None):
        return settings.bulk
    return settings.key_defaults.get(owner, settings.interactive) if owner else settings.interactive


def reserved_slots(concurrency: int, share: float) -> int:
    """Slots of a worker running `concurrency` jobs that bulk jobs leave free: `share` of them, at least one (none
    when `share` is 0 or the worker has a single slot)."""
    if share <= 0 or concurrency < 2:
        return 0
    return min(concurrency - 1, max(1, round(concurrency * share)))
