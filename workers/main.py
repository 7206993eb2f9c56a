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
    parser.add_argument("--ocr-models", action="store_true",
                        help="run the OCR pipeline's model-steps worker (queue maoocr.ocr.models; threads that wait "
                             "on the VLM and LLM workers for pages)")
    parser.add_argument("--model", help="model name from the models file (default: the default model)")
    parser.add_argument("--gpu", type=int, help="GPU index to pin this worker to (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--cpu", action="store_true", help="run the engine on the CPU even if a GPU is visible")
    parser.add_argument("--concurrency", type=int, help="jobs fed to the engine at once (default: max_num_seqs)")
    parser.add_argument("--name", help="worker name (default: llm-<model>-<pid>)")
    parser.add_argument("--loglevel", default=None, help="log level (default: the config's log_level)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus /metrics on this port (0: any free port; default: metrics.worker_port)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gpu is not None:
        # Before anything imports torch or vLLM: CUDA reads this once, at its initialisation.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    multiprocess_dir = None
    if args.ocr_models:
        args.ocr = True
    if args.ocr and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Before anything imports prometheus_client: it picks per-process files (summed by the exporter) over
        # in-memory values at import, and the prefork children count the pages.
        import tempfile

        multiprocess_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="maoocr-metrics-")

    from maoocr.config import load_settings
    from maoocr.engines.factory import create_engine, plan_engine
    from maoocr.engines.reaper import watch_descendants
    from maoocr.generation.host import EngineHost
    from maoocr.logs import setup_logging
    from maoocr.metrics import EngineLoadCollector
    from maoocr.priorities import reserved_slots
    from maoocr.store.client import connect
    from maoocr.store.heartbeats import Heartbeat
    from maoocr.store.jobs import JobStore
    from maoocr.store.streams import StreamStore, StreamWriter
    from workers.celery_app import create_celery_app
    from workers.tasks import register_generation_task

    settings = load_settings()
    setup_logging(args.loglevel or settings.log_level)
    if args.ocr:
        try:
            return run_ocr_worker(settings, args)
        finally:
            if multiprocess_dir is not None:
                import shutil

                shutil.rmtree(multiprocess_dir, ignore_errors=True)
    log = logging.getLogger("maoocr.worker")
    model = args.model or settings.default_model
    plan = plan_engine(settings, model, force_cpu=args.cpu)
    concurrency = args.concurrency or plan.max_num_seqs
    queue = settings.queues.llm_queue(model)
    name = args.name or f"llm-{model}-{os.getpid()}"
    log.warning("worker %s: model=%s queue=%s device=%s concurrency=%d (%s)", name, model, queue, plan.device,
                concurrency, "; ".join(plan.reasons))

    # Kills the engine core if this process dies without stopping it (it would keep its memory otherwise).
    reaper = watch_descendants()  # noqa: F841 -- kept alive for its pipe
    client = connect(settings.redis_url, patient=True)  # rides out a Redis outage rather than failing jobs
    metrics_port: int | None = None
    heartbeat = Heartbeat(client, name, settings.ttls.heartbeat_s,
                          lambda: {"kind": "llm", "queue": queue, "concurrency": concurrency, "gpu": args.gpu,
                                   "metrics_port": metrics_port, **host.describe()})
    # Jobs are claimed under this process's heartbeat identity, and their streams and outcomes are written only
    # while their records still name it (a job taken over from this worker is the new one's alone).
    host = EngineHost(create_engine(settings, model, plan), JobStore(client, settings.ttls.job_s),
                      StreamWriter(StreamStore(client, settings.ttls.stream_s), fence=heartbeat.identity), client,
                      stamp_chunks=settings.stream_timestamps, worker=heartbeat.identity,
                      engine_factory=lambda: create_engine(settings, model, plan))
    host.start()
    metrics_port = start_metrics(settings, args, [EngineLoadCollector(model, host.runner.load)])
    beat_when_consuming(heartbeat)
    log.warning("worker %s: engine ready", name)

    app = create_celery_app(settings, prefetch_multiplier=1, batched_intake=settings.worker.batched_intake,
                            interactive_reserve=reserved_slots(concurrency, settings.priorities.interactive_reserve))
    register_generation_task(app, host)
    after_shutdown_grace(settings.worker.shutdown_grace_s, host.drain)
    freeze_heap_when_ready(log)
    try:
        # Threads, not prefork: the engine must stay in this process, shared by every job.
        app.worker_main(celery_argv(args.loglevel or settings.log_level, "--pool=threads",
                                    f"--concurrency={concurrency}", f"--queues={queue}", f"--hostname={name}@%h",
                                    "--without-mingle", "--without-gossip"))
    finally:
        heartbeat.stop()
        host.stop()
    return 0


def beat_when_consuming(heartbeat) -> None:
    """The heartbeat, which makes the worker count in `/readyz`, starts once Celery consumes its queue: a job
    sent as soon as the API says ready is taken at once. Celery's SIGTERM handler is swapped then too."""
    from celery.signals import worker_ready

    def on_ready(sender, **_: object) -> None:
        quiet_warm_shutdown(sender.controller)
        heartbeat.start()

    worker_ready.connect(on_ready, weak=False)


def quiet_warm_shutdown(worker) -> None:
    """SIGTERM keeps Celery's warm shutdown (running jobs finish or go back) without the line Celery writes to
    stdout for it: whoever sends the signal says the stack is stopping. `verbose` is Celery's own switch for it."""
    from celery.apps.worker import _shutdown_handler

    _shutdown_handler(worker, sig="SIGTERM", how="Warm", verbose=False)


def exit_now(code: int) -> None:
    """Ends the process once its own shutdown is done (jobs handed back, engine stopped, heartbeat removed): the
    interpreter's teardown of torch and vLLM adds seconds and, with Triton's bindings loaded, a screen of leak
    reports."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def celery_argv(level: str, *worker_options: str) -> list[str]:
    """`celery worker` arguments with Celery's own output at our log level: its banner only at INFO or below.

    Its warning about running as root is not repeated by every worker: it is about pickled messages run with
    root's rights, and these workers accept JSON only (workers/celery_app.py)."""
    import warnings

    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", message="You're running the worker with superuser privileges",
                            category=SecurityWarning)
    number = logging.getLevelName(level.upper())
    quiet = isinstance(number, int) and number > logging.INFO
    return [*(["--quiet"] if quiet else []), "worker", f"--loglevel={level}", *worker_options]


def freeze_heap_when_ready(log: logging.Logger) -> None:
    """Once Celery's consumer runs (engine, app and pool all built), the startup heap leaves the GC's full passes."""
    from celery.signals import worker_ready

    from maoocr.gc_heap import freeze_startup_heap

    def freeze(**_: object) -> None:
        log.info("startup heap frozen: %d objects", freeze_startup_heap())

    worker_ready.connect(freeze, weak=False)


def after_shutdown_grace(grace_s: float, drain) -> None:
    """On SIGTERM Celery stops taking tasks and waits for the running ones (warm shutdown); after `grace_s`
    `drain` hands whatever still runs back to the queue, so the wait is bounded."""
    import threading

    from celery.signals import worker_shutting_down

    def start_timer(**_: object) -> None:
        timer = threading.Timer(grace_s, drain)
        timer.daemon = True
        timer.start()

    worker_shutting_down.connect(start_timer, weak=False)


def stop_cold() -> None:
    """Celery's cold shutdown (SIGQUIT to itself): the pool's running pages are killed and their unacked
    messages go back on the queue as the broker channel closes, so another worker takes them at once."""
    import signal

    os.kill(os.getpid(), signal.SIGQUIT)


def run_ocr_worker(settings, args: argparse.Namespace) -> int:
    """OCR pages are CPU work: a prefork pool, one process per core, each with its own ONNX engines. With
    --ocr-models, the steps of pages that wait on a model instead: a thread each, as many as
    `ocr.model_steps_concurrency`, so the VLM workers see hundreds of pages at once."""
    from maoocr.pipeline.ocr_job import OCRJobs
    from maoocr.store.client import connect
    from maoocr.store.heartbeats import Heartbeat
    from maoocr.store.jobs import JobStore
    from maoocr.store.streams import StreamStore
    from workers.celery_app import create_celery_app
    from workers.ocr_tasks import register_ocr_tasks

    models = args.ocr_models
    if models:
        concurrency = args.concurrency or settings.ocr.model_steps_concurrency
        queue, kind, name, pool = settings.queues.ocr_models, "ocr-models", f"ocr-models-{os.getpid()}", "threads"
    else:
        concurrency = args.concurrency or settings.ocr.concurrency or os.cpu_count() or 1
        queue, kind, name, pool = settings.queues.ocr, "ocr", f"ocr-{os.getpid()}", "prefork"
    client = connect(settings.redis_url, patient=True)  # rides out a Redis outage rather than failing jobs
    ocr_jobs = OCRJobs(settings, JobStore(client, settings.ttls.job_s), StreamStore(client, settings.ttls.stream_s),
                       connect(settings.redis_url, decode=False, patient=True),
                       engine_threads=max(1, (os.cpu_count() or 1) // concurrency))
    ocr_jobs.hand_off_models, ocr_jobs.models_only = not models, models
    name = args.name or name
    app = create_celery_app(settings, prefetch_multiplier=1)
    register_ocr_tasks(app, ocr_jobs, settings.queues.ocr, settings.queues.ocr_models)
    metrics_port = start_metrics(settings, args, [], os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    heartbeat = Heartbeat(client, name, settings.ttls.heartbeat_s,
                          lambda: {"model": None, "kind": kind, "queue": queue, "concurrency": concurrency,
                                   "metrics_port": metrics_port})
    ocr_jobs.worker = heartbeat.identity  # before the pool forks: pages and splits are claimed under it
    beat_when_consuming(heartbeat)
    after_shutdown_grace(settings.worker.shutdown_grace_s, stop_cold)
    try:
        app.worker_main(celery_argv(args.loglevel or settings.log_level, f"--pool={pool}",
                                    f"--concurrency={concurrency}", f"--queues={queue}", f"--hostname={name}@%h",
                                    "--without-mingle", "--without-gossip"))
    finally:
        heartbeat.stop()
    return 0


def start_metrics(settings, args: argparse.Namespace, collectors: list, multiprocess_dir: str | None = None
                  ) -> int | None:
    """The worker's Prometheus exporter, when a port is configured; returns the port it listens on."""
    from maoocr.metrics import serve_worker_metrics

    port = args.metrics_port if args.metrics_port is not None else settings.metrics.worker_port
    if port is None:
        return None
    port = serve_worker_metrics(settings.metrics.worker_host, port, collectors, multiprocess_dir)
    logging.getLogger("maoocr.worker").warning("worker metrics on http://%s:%d/metrics",
                                               settings.metrics.worker_host, port)
    return port


if __name__ == "__main__":
    exit_now(main())
