"""EngineHost: keeps one engine resident on its own event-loop thread and runs jobs into it from any thread.

Each job's coroutine is scheduled on the same loop, so N callers (e.g. N Celery threads) give the engine N
concurrent requests and continuous batching stays intact. The host also owns the engine's failures and its
stop: a dead engine fails its in-flight jobs with a reason and is reloaded; `drain` hands running jobs back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

import redis

from maoocr.engines.base import LLMEngine
from maoocr.errors import EngineError
from maoocr.generation.runner import GenerationRunner
from maoocr.protocol.generation import GenerationTask
from maoocr.store.jobs import JobStore
from maoocr.store.keys import CANCEL_CHANNEL
from maoocr.store.streams import StreamWriter

log = logging.getLogger(__name__)

BUSY_POLL_S = 1.0  # how often a redelivered copy of a job running elsewhere looks whether that worker died


class HandedBack(Exception):
    """The job was not finished here and must go back to the queue (the worker is stopping)."""


class EngineHost:
    def __init__(self, engine: LLMEngine, jobs: JobStore, writer: StreamWriter, control: redis.Redis,
                 stamp_chunks: bool = False, worker: str = "local",
                 engine_factory: Callable[[], LLMEngine] | None = None) -> None:
        self.engine = engine
        self.worker = worker  # identity jobs are claimed under (Heartbeat.identity)
        self.engine_factory = engine_factory  # builds a fresh engine when this one dies
        self._ready = threading.Event()  # cleared while the engine reloads: jobs wait rather than fail
        self._reload_lock = threading.Lock()
        self.runner = GenerationRunner(engine, jobs, writer, stamp=stamp_chunks)
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
        self._ready.set()
        self._pubsub = self.control.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(**{CANCEL_CHANNEL: self._on_cancel})
        self._listener = self._pubsub.run_in_thread(sleep_time=0.5, daemon=True,
                                                    exception_handler=self._listener_error)

    def run_job(self, task: GenerationTask) -> None:
        """Run one job to its end (blocking the calling thread, not the engine). Raises HandedBack when the job
        must be delivered again instead (the worker is stopping)."""
        job_id = task.job_id
        self._raise_if_stopping(job_id)
        while not self._ready.wait(BUSY_POLL_S):  # the engine is reloading
            self._raise_if_stopping(job_id)
        while (attempt := self.runner.claim(job_id, self.worker)) == GenerationRunner.BUSY:
            # A copy delivered again while its worker still runs it: wait for the end, or for that worker's death.
            self._raise_if_stopping(job_id)
            time.sleep(BUSY_POLL_S)
        if not attempt:
            return
        with self._count_lock:
            self.jobs_running += 1
        acc, exc, engine = None, None, self.engine
        try:
            resume = self.runner.resume(job_id, attempt, task.params)
            future = asyncio.run_coroutine_threadsafe(self.runner.stream(job_id, task.params, resume), self.loop)
            acc = future.result()
        except BaseException as error:  # every failure becomes the job's reason, never a lost job
            exc = error
        finally:
            with self._count_lock:
                self.jobs_running -= 1
                self.jobs_done += 1
        if acc is not None and acc.requeue:
            self.runner.jobs.release(job_id, self.worker)
            raise HandedBack(job_id)
        if exc is not None and (engine.dead() or getattr(exc, "code", None) == "engine_dead"):
            exc = EngineError(f"the engine died while running this job ({type(exc).__name__}: {exc}); "
                              "the worker is reloading it", code="engine_dead")
            self._reload(engine)
        self.runner.finish(job_id, task.params, acc, exc, worker=self.worker)

    def drain(self) -> None:
        """Shutdown grace is over: abort every running request; their jobs are handed back to the queue."""
        requests = self.runner.drain()
        log.warning("stopping: handing back %d running job(s)", len(requests))
        for request_id in requests:
            asyncio.run_coroutine_threadsafe(self.engine.abort(request_id), self.loop)

    def _raise_if_stopping(self, job_id: str) -> None:
        if self.runner.stopping:
            raise HandedBack(job_id)

    def _reload(self, dead: LLMEngine) -> None:
        """Replace a dead engine once, however many of its jobs report it; new jobs wait until it is back."""
        with self._reload_lock:
            if dead is not self.engine or not self._ready.is_set() or self.engine_factory is None:
                return
            self._ready.clear()
        threading.Thread(target=self._reload_engine, args=(dead,), name="maoocr-engine-reload", daemon=True).start()

    def _reload_engine(self, dead: LLMEngine) -> None:
        log.error("engine died: reloading it")
        try:
            asyncio.run_coroutine_threadsafe(dead.shutdown(), self.loop).result(timeout=60)
        except Exception as exc:  # it is dead already; what is left of it goes with the process
            log.warning("dead engine shutdown: %s", exc)
        delay = 1.0
        while True:
            try:
                engine = self.engine_factory()
                asyncio.run_coroutine_threadsafe(engine.start(), self.loop).result()
                break
            except Exception:
                log.exception("engine reload failed; retrying in %.0f s", delay)
                time.sleep(delay)
                delay = min(delay * 2, 60)
        self.engine = self.runner.engine = engine
        self._ready.set()
        log.warning("engine reloaded")

    def describe(self) -> dict[str, Any]:
        info = self.engine.info()
        return {"model": info.name, "engine": info.model_dump(), "load": self.engine.load(),
                "requests": self.runner.load(),
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
        # Redis went away; redis-py reconnects and re-subscribes on the next get_message. The pause keeps a
        # long outage from turning this thread's loop into a busy one.
        log.warning("cancel listener: %s", exc)
        time.sleep(1.0)
