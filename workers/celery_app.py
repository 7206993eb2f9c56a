"""The Celery app, configured from maoocr settings: JSON only, late acks, prefetch sized by the caller.

Celery's own commands find an app here too: `celery -A workers.celery_app inspect ping` (or `status`, `purge`,
…) builds one from the configuration, on the Redis of a running `maoocr up` unless MAOOCR_REDIS_URL names one.
"""

from __future__ import annotations

import functools
import ssl
from urllib.parse import urlsplit

from celery import Celery

from maoocr.config import Settings
from maoocr.priorities import queue_step
from maoocr.store.sentinel import is_sentinel_url, parse_sentinel_url


def create_celery_app(settings: Settings, prefetch_multiplier: int = 1, batched_intake: bool = False,
                      interactive_reserve: int = 0) -> Celery:
    """`batched_intake`: consume through `workers.batched_intake` (many queued tasks per Redis round trip), which
    keeps `interactive_reserve` of the prefetch credit for jobs more urgent than bulk work."""
    sentinel = parse_sentinel_url(settings.redis_url) if is_sentinel_url(settings.redis_url) else None
    # Celery and kombu write Sentinels their own way (sentinel://a:26379;sentinel://b:26379 + master_name).
    url = sentinel.kombu_url() if sentinel else settings.redis_url
    # The result backend only carries OCR pages into their chord; job results live in the job record.
    app = Celery("maoocr", broker=url, backend=url)
    if sentinel:
        # Always this one: kombu's stock Sentinel channel stops a worker that acks or closes after a failover.
        app.conf.broker_transport = "workers.batched_intake:SentinelTransport"
    elif batched_intake:
        app.conf.broker_transport = "workers.batched_intake:Transport"
    redelivery_s = settings.worker.redelivery_timeout_s
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle: a message is data, not code
        result_serializer="json",
        task_ignore_result=True,  # results live in the job record; only chord parts keep theirs
        result_expires=settings.ttls.job_s,
        # One result backend for all threads (Celery's default: one per thread). An LLM worker runs hundreds of
        # task threads and the API a thread per connection; each backend built costs a package metadata lookup,
        # paid on the GIL by every new thread of a burst.
        result_backend_thread_safe=True,
        task_acks_late=True,  # ack after the job ends, so a dead worker's jobs are delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=prefetch_multiplier,
        broker_connection_retry_on_startup=True,
        # A killed worker's unacked tasks wait in the broker's `unacked` hash; any live or restarted worker
        # puts them back on their queue once older than this (checked at start-up and every few seconds).
        broker_transport_options={"visibility_timeout": redelivery_s,
                                  "unacked_restore_interval": max(1, min(10, redelivery_s // 4)),
                                  "unacked_restore_throttle": 1,
                                  # a worker killed while holding the restore lock must not stall it for long
                                  "unacked_mutex_expire": max(5, min(300, redelivery_s))},
        # Priorities (maoocr.priorities): kombu's default steps, and a document's page tasks at its own.
        task_inherit_parent_priority=True,
        worker_hijack_root_logger=False,
        task_default_queue=settings.queues.llm_queue(settings.default_model),
        # Task events cost an LLM worker's main thread a noticeable share; Flower turns them on when it runs.
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
    )
    if batched_intake and interactive_reserve:
        app.conf.broker_transport_options.update(interactive_reserve=interactive_reserve,
                                                 bulk_step=queue_step(settings.priorities.bulk))
    if sentinel:
        app.conf.broker_transport_options.update(sentinel.celery_transport_options())
        app.conf.result_backend_transport_options = sentinel.celery_transport_options()
        if sentinel.celery_tls():
            app.conf.update(broker_use_ssl=sentinel.celery_tls(), redis_backend_use_ssl=sentinel.celery_tls())
    app.conf.update(_outage_settings(app.conf.broker_transport_options))
    if urlsplit(settings.redis_url).scheme == "rediss" and "ssl_cert_reqs" not in settings.redis_url:
        # Celery refuses a rediss:// URL without ssl_cert_reqs; verify certificates unless the URL says otherwise.
        app.conf.update(broker_use_ssl={"ssl_cert_reqs": ssl.CERT_REQUIRED},
                        redis_backend_use_ssl={"ssl_cert_reqs": ssl.CERT_REQUIRED})
    return app


def _outage_settings(transport_options: dict) -> dict:
    """Riding out a Redis outage: reconnect for ever, and never wait on a dead socket.

    Socket timeouts and keepalives turn a vanished Redis into an error that triggers a reconnect; the
    health check pings a connection idle for 30 s before using it. Tasks running when the broker
    connection drops keep running (their job records are written once Redis is back; their messages,
    which can no longer be acked, come back after the visibility timeout and are skipped as finished).
    """
    sockets = {"socket_timeout": 30, "socket_connect_timeout": 5, "socket_keepalive": True,
               "retry_on_timeout": True, "health_check_interval": 30}
    return {
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # the default (100) gives up on an outage of ~an hour
        "broker_connection_timeout": 5,
        "broker_transport_options": {**transport_options, **sockets},
        "redis_socket_timeout": 30,
        "redis_socket_connect_timeout": 5,
        "redis_socket_keepalive": True,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 30,
        "result_backend_always_retry": True,  # a chord's page results are stored once Redis is back
        "result_backend_max_sleep_between_retries_ms": 2000,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def __getattr__(name: str) -> Celery:
    # `celery -A workers.celery_app` looks for `app`, then `celery`; built on first use, so importing this
    # module (as every worker does) loads no settings.
    if name in ("app", "celery"):
        return _command_line_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _command_line_app() -> Celery:
    from maoocr.config import load_settings
    from maoocr.up_record import use_running_up

    use_running_up()
    return create_celery_app(load_settings())
