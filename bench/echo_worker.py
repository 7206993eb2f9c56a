"""P2's baseline: a bare Celery worker with one echo task, configured like MaoOCR's LLM worker.

Same Celery app settings (`workers.celery_app`: JSON, late acks, prefetch 1), the same thread pool and the
same Redis; the only thing it lacks is MaoOCR itself (API, job records, engine, streams).
Run: `python -m bench.echo_worker --concurrency N` with MAOOCR_CONFIG pointing at the shared config.
"""

from __future__ import annotations

import argparse
import sys

from celery import Celery

from maoocr.config import Settings, load_settings
from workers.celery_app import create_celery_app

ECHO_TASK = "bench.echo"
ECHO_QUEUE = "bench.echo"


def create_echo_app(settings: Settings) -> Celery:
    app = create_celery_app(settings, prefetch_multiplier=1)

    @app.task(name=ECHO_TASK, ignore_result=False)  # the result is how the client hears the answer
    def echo(value):
        return value

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_worker")
    parser.add_argument("--concurrency", type=int, default=64, help="threads (MaoOCR's LLM worker: max_num_seqs)")
    args = parser.parse_args(argv)
    app = create_echo_app(load_settings())
    app.worker_main(["worker", "--pool=threads", f"--concurrency={args.concurrency}", f"--queues={ECHO_QUEUE}",
                     "--hostname=echo@%h", "--loglevel=WARNING", "--without-mingle", "--without-gossip"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
