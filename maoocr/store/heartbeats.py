"""Worker heartbeats in Redis: who is alive, what model it serves, how loaded its engine is."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

import redis

from maoocr.store.keys import WORKER_KEY


class Heartbeat:
    """Refreshes `maoocr:worker:<name>` every third of its TTL from a background thread."""

    def __init__(self, client: redis.Redis, name: str, ttl_s: int, describe: Callable[[], dict[str, Any]]) -> None:
        self.redis = client
        self.name = name
        self.ttl_s = ttl_s
        self.describe = describe
        # Told apart from an earlier process of the same name: jobs are claimed by `identity`, and a claim
        # is alive only while this very process's heartbeat carries its token.
        self.instance = uuid.uuid4().hex[:12]
        self.identity = f"{name} {self.instance}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maoocr-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        info = {"name": self.name, "instance": self.instance, "hostname": socket.gethostname(),
                "pid": os.getpid(), "at": time.time()}
        info.update(self.describe())
        self.redis.set(WORKER_KEY.format(self.name), json.dumps(info), ex=self.ttl_s)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.redis.delete(WORKER_KEY.format(self.name))
        except redis.RedisError:
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.beat()
            except redis.RedisError:
                pass  # Redis away: the key expires and readiness says so; we beat again when it is back


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    workers = []
    for key in client.scan_iter(match=WORKER_KEY.format("*"), count=100):
        raw = client.get(key)
        if raw:
            workers.append(json.loads(raw))
    return workers
