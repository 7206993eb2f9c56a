"""Keeps a serving process's startup heap out of the garbage collector's full passes.

An LLM worker holds hundreds of thousands of objects from its imports and its loaded engine (vLLM, torch, Celery)
that live as long as the process. Python's oldest-generation collection walks every one of them with the GIL held,
long enough on a small CPU to stall every job's stream and the queue's intake. vLLM's own API server freezes its
startup heap the same way once it is ready.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what is garbage now, then move every surviving object to the permanent generation, where no
    collection looks at it again. Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
