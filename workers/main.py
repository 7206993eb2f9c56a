"""`maoocr worker`: an LLM worker pinned to one GPU (or the CPU) with its engine loaded once, serving many jobs.

The engine lives in this (non-daemonic) main process; Celery runs a thread pool as wide as the engine's
`max_num_seqs`, and every thread hands its job to the engine's event loop, so jobs run concurrently.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="maoocr worker", description=__doc__)
    parser.add_argument("--ocr", action="store_true", help="run an OCR worker (queue maoocr.ocr) instead of an LLM one")
    parser.add_argument("--model", help="model name from the models file (default: the default model)")
    parser.add_argument("--gpu", type=int, help="GPU index to pin this worker to (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--cpu", action="store_true", help="run the engine on the CPU even if a GPU is visible")
    parser.add_argument("--concurrency", type=int, help="jobs fed to the engine at once (default: max_num_seqs)")
    parser.add_argument("--name", help="worker name (default: llm-<model>-<pid>)")
    parser.add_argument("--loglevel", default=None, help="log level (default: the config's log_level)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gpu is not None:
        # Before anything imports torch or vLLM: CUDA reads this once, at its initialisation.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)

    from maoocr.config import load_settings
    from maoocr.engines.factory import create_engine, plan_engine
    from maoocr.generation.host import EngineHost
    from maoocr.heartbeats import Heartbeat
    from maoocr.jobs import JobStore
    from maoocr.logs import setup_logging
    from maoocr.redis_client import connect
    from maoocr.streams import StreamStore, StreamWriter
    from workers.celery_app import create_celery_app
    from workers.tasks import register_generation_task

    settings = load_settings()
    setup_logging(args.loglevel or settings.log_level)
    if args.ocr:
        return run_ocr_worker(settings, args)
    log = logging.getLogger("maoocr.worker")
    model = args.model or settings.default_model
    plan = plan_engine(settings, model, force_cpu=args.cpu)
    concurrency = args.concurrency or plan.max_num_seqs
    queue = settings.queues.llm_queue(model)
    name = args.name or f"llm-{model}-{os.getpid()}"
    log.warning("worker %s: model=%s queue=%s device=%s concurrency=%d (%s)", name, model, queue, plan.device,
                concurrency, "; ".join(plan.reasons))

    client = connect(settings.redis_url)
    host = EngineHost(create_engine(settings, model, plan), JobStore(client, settings.ttls.job_s),
                      StreamWriter(StreamStore(client, settings.ttls.stream_s)), client)
    host.start()
    heartbeat = Heartbeat(client, name, settings.ttls.heartbeat_s,
                          lambda: {"kind": "llm", "queue": queue, "concurrency": concurrency, "gpu": args.gpu,
                                   **host.describe()})
    heartbeat.start()
    log.warning("worker %s: engine ready", name)

    app = create_celery_app(settings, prefetch_multiplier=1)
    register_generation_task(app, host)
    try:
        # Threads, not prefork: the engine must stay in this process, shared by every job.
        app.worker_main(["worker", "--pool=threads", f"--concurrency={concurrency}", f"--queues={queue}",
                         f"--hostname={name}@%h", f"--loglevel={args.loglevel or settings.log_level}",
                         "--without-mingle", "--without-gossip"])
    finally:
        heartbeat.stop()
        host.stop()
    return 0


def run_ocr_worker(settings, args: argparse.Namespace) -> int:
    """OCR pages are CPU work: a prefork pool, one process per core, each with its own ONNX engines."""
    from maoocr.heartbeats import Heartbeat
    from maoocr.jobs import JobStore
    from maoocr.pipeline.ocr_job import OCRJobs
    from maoocr.redis_client import connect
    from maoocr.streams import StreamStore
    from workers.celery_app import create_celery_app
    from workers.ocr_tasks import register_ocr_tasks

    concurrency = args.concurrency or settings.ocr.concurrency or os.cpu_count() or 1
    client = connect(settings.redis_url)
    ocr_jobs = OCRJobs(settings, JobStore(client, settings.ttls.job_s), StreamStore(client, settings.ttls.stream_s),
                       connect(settings.redis_url, decode=False),
                       engine_threads=max(1, (os.cpu_count() or 1) // concurrency))
    queue = settings.queues.ocr
    name = args.name or f"ocr-{os.getpid()}"
    app = create_celery_app(settings, prefetch_multiplier=1)
    register_ocr_tasks(app, ocr_jobs, queue)
    heartbeat = Heartbeat(client, name, settings.ttls.heartbeat_s,
                          lambda: {"model": None, "kind": "ocr", "queue": queue, "concurrency": concurrency})
    heartbeat.start()
    try:
        app.worker_main(["worker", "--pool=prefork", f"--concurrency={concurrency}", f"--queues={queue}",
                         f"--hostname={name}@%h", f"--loglevel={args.loglevel or settings.log_level}",
                         "--without-mingle", "--without-gossip"])
    finally:
        heartbeat.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
