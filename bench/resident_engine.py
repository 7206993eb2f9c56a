"""The benchmarks' "engine directly" path: the worker's engine class, loaded once on its own event-loop thread in
the benchmark's process (as a worker holds it), with the same settings the worker reads from the same config."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Coroutine

from maoocr.gc_heap import freeze_startup_heap


class ResidentEngine:
    def __init__(self, config: Path, gpu: bool = False, stream_interval: int | None = None) -> None:
        from maoocr.config import load_settings
        from maoocr.engines.factory import create_engine, plan_engine

        settings = load_settings(config, env={})
        self.model = settings.default_model
        plan = plan_engine(settings, self.model, force_cpu=not gpu)
        if stream_interval is not None:
            plan = plan.model_copy(update={"stream_interval": stream_interval})
        self.engine = create_engine(settings, self.model, plan)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="bench-engine-loop", daemon=True).start()
        self.run(self.engine.start())
        freeze_startup_heap()  # hosted as the worker hosts its engine (workers.main)

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout_s: float | None = None) -> Any:
        """Run a coroutine on the engine's loop and wait for its result (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.run(self.engine.shutdown(), timeout_s=60)
        self.loop.call_soon_threadsafe(self.loop.stop)


def wait_for_free_gpu(gpu: bool, timeout_s: float = 120) -> None:
    """An engine's GPU memory is released when its engine-core process exits; wait for that before the next."""
    if not gpu:
        return
    from maoocr.engines.memory import read_gpus

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        gpu0 = read_gpus()[0]
        if gpu0.free_mb > 0.9 * gpu0.total_mb:
            return
        time.sleep(1)
