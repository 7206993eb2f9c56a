"""The LLM worker freezes its startup heap once Celery's consumer is ready (maoocr.gc_heap): without it, a full
garbage collection walked ~0.7 M startup objects with the GIL held, stalling every stream for up to 0.7 s."""

from __future__ import annotations

import re

from devtools.processes import wait_until


def test_the_llm_worker_freezes_its_startup_heap_once_ready(stack):
    log = next(proc.log for proc in stack.procs if proc.name == "worker")

    def frozen() -> int | None:
        match = re.search(r"startup heap frozen: (\d+) objects", log.read_text(errors="replace"))
        return int(match.group(1)) if match else None

    wait_until(lambda: frozen() is not None, stack.procs, timeout_s=60)
    # vLLM, torch, Celery and the engine: far more than an empty interpreter's ~50 k objects
    assert frozen() > 200_000
