"""EngineHost: keeps one engine resident on its own event-loop thread and runs jobs into it from any thread.

Each job's coroutine is scheduled on the same loop, so N callers (e.g. N Celery threads) give the engine N
concurrent requests and continuous batching stays intact.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import redis

from maoocr.engines.base import LLMEngine
from maoocr.generation.runner import GenerationRunner
from maoocr.jobs import CANCEL_CHANNEL, JobStore
from maoocr.protocol.generation import GenerationTask
from maoocr.streams import StreamWriter

log = logging.getLogger(__name__)


class EngineHost:
    def __init__(self, engine: LLMEngine, jobs: JobStore, writer: StreamWriter, control: redis.Redis) -> None:
        self.engine = engine
        self.runner = GenerationRunner(engine, jobs, writer)
        self.writer = writer
        self.control = control
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="maoocr-engine-loop", daemon=True)
        self._listener: threading.Thread | None = None
        self._pubsub: redis.client.PubSub | None = None
        self.jobs_running = 0
        self.jobs_done = 0
        self._count_lock = threading.Lock()

    def start(self) -> None:
        """Start the loop and load the engine (blocking until it is ready), then listen for cancels."""
        self._loop_thread.start()
        asyncio.run_coroutine_threadsafe(self.engine.start(), self.loop).result()
        self._pubsub = self.control.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(**{CANCEL_CHANNEL: self._on_cancel})
        self._listener = self._pubsub.run_in_thread(sleep_time=0.5, daemon=True,
                                                    exception_handler=self._listener_error)

    def run_job(self, task: GenerationTask) -> None:
        """Run one job to its end (blocking the calling thread, not the engine)."""
        if not self.runner.claim(task.job_id):
            return
        with self._count_lock:
            self.jobs_running += 1
        acc, exc = None, None
        try:
            future = asyncio.run_coroutine_threadsafe(self.runner.stream(task.job_id, task.params), self.loop)
            acc = future.result()
        except BaseException as error:  # every failure becomes the job's reason, never a lost job
            exc = error
        finally:
            with self._count_lock:
                self.jobs_running -= 1
                self.jobs_done += 1
        self.runner.finish(task.job_id, task.params, acc, exc)

    def describe(self) -> dict[str, Any]:
        info = self.engine.info()
        return {"model": info.name, "engine": info.model_dump(), "load": self.engine.load(),
                "jobs_running": self.jobs_running, "jobs_done": self.jobs_done}

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self.writer.close()
        asyncio.run_coroutine_threadsafe(self.engine.shutdown(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def _on_cancel(self, message: dict) -> None:
        job_id = message["data"]
        request_id = self.runner.request_cancel(job_id)
        if request_id is not None:
            log.info("job=%s cancel: aborting engine request", job_id)
            asyncio.run_coroutine_threadsafe(self.engine.abort(request_id), self.loop)

    @staticmethod
    def _listener_error(exc: BaseException, pubsub: Any, thread: Any) -> None:
        # Redis went away; redis-py reconnects and re-subscribes on the next get_message.
        log.warning("cancel listener: %s", exc)
