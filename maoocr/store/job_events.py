"""One Redis connection per process for "job finished" events, shared by every thread waiting on a job.

Without it each waiting request holds its own pub/sub connection; with hundreds of concurrent requests that
exhausts the connection pool.
"""

from __future__ import annotations

import logging
import threading

import redis

from maoocr.store.keys import DONE_PATTERN

log = logging.getLogger(__name__)


class JobDoneListener:
    """Subscribed while anyone waits: when Redis goes away with no waiter left, the thread ends quietly (a process
    done with waiting, or one whose Redis was stopped on purpose), and the next `register` starts it again."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._waiters: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        with self._lock:
            self._start()
        self._ready.wait(10)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maoocr-job-done", daemon=True)
        self._thread.start()

    def register(self, job_id: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, []).append(event)
            if self._thread is None:
                self._start()  # a finish missed while it subscribes is caught by the waiter's own re-reads
        return event

    def unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiters.get(job_id, [])
            if event in events:
                events.remove(event)
            if not events:
                self._waiters.pop(job_id, None)

    def _run(self) -> None:
        outage = False  # said once per outage, not once a second while Redis is away
        while True:
            pubsub = self.redis.pubsub()
            try:
                pubsub.psubscribe(DONE_PATTERN)
                while True:
                    message = pubsub.get_message(timeout=5)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        self._ready.set()
                        if outage:
                            log.info("job-done listener: Redis is back")
                            outage = False
                        continue
                    job_id = message["channel"].split(":")[2]
                    with self._lock:
                        events = list(self._waiters.get(job_id, ()))
                    for event in events:
                        event.set()
            except redis.RedisError as exc:
                with self._lock:
                    if not self._waiters:
                        self._thread = None
                        return
                # Waiters re-read job records on their own every few seconds, so nothing is missed meanwhile.
                if not outage:
                    log.warning("job-done listener: %s; reconnecting every second", exc)
                    outage = True
                threading.Event().wait(1)
            finally:
                pubsub.close()
