"""A Celery worker with MaoOCR's Celery settings and one task that holds until released (intake test and bench).

`python -m bench.holding_worker --concurrency N [--batched-intake [--interactive-reserve R]] [--gil-hog]`,
MAOOCR_CONFIG pointing at a config.
Each run of the task appends "<argument> <time>" to the list `held:started`, then waits for `held:release`.
`--gil-hog` adds what an LLM worker has beside Celery: an event loop busy in Python about two thirds of the time
(vLLM's output processing between engine steps), which the consumer thread has to share the GIL with.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time

import redis

from maoocr.config import load_settings
from workers.celery_app import create_celery_app

TASK = "bench.hold"
QUEUE = "bench.hold"
STARTED = "held:started"
RELEASE = "held:release"


async def busy_engine_loop() -> None:
    while True:
        end = time.perf_counter() + 0.008
        while time.perf_counter() < end:  # 8 ms of Python on the GIL, as an engine step's output processing
            sum(range(200))
        await asyncio.sleep(0.004)  # then waiting for the next step


def watch_release(client: redis.Redis, released: threading.Event) -> None:
    """One thread polls the release key for every held job (each job polling would load the GIL)."""
    while True:
        if client.exists(RELEASE):
            released.set()
        else:
            released.clear()
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.holding_worker")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batched-intake", action="store_true")
    parser.add_argument("--gil-hog", action="store_true")
    parser.add_argument("--interactive-reserve", type=int, default=0,
                        help="slots that bulk-priority jobs leave free (with --batched-intake)")
    args = parser.parse_args(argv)
    settings = load_settings()
    app = create_celery_app(settings, prefetch_multiplier=1, batched_intake=args.batched_intake,
                            interactive_reserve=args.interactive_reserve)
    client = redis.Redis.from_url(settings.redis_url, max_connections=args.concurrency + 8)
    if args.gil_hog:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(busy_engine_loop(), loop)

    released = threading.Event()
    threading.Thread(target=watch_release, args=(client, released), daemon=True).start()

    @app.task(name=TASK)
    def hold(value):
        client.rpush(STARTED, f"{value} {time.time()}")  # a job's claim is one round trip too
        released.wait()  # blocked without the GIL, as a job thread waiting for its engine request

    app.worker_main(["worker", "--pool=threads", f"--concurrency={args.concurrency}", f"--queues={QUEUE}",
                     "--hostname=held@%h", "--loglevel=INFO", "--without-mingle", "--without-gossip"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
