"""The Celery app, configured from maoocr settings: JSON only, late acks, prefetch sized by the caller."""

from __future__ import annotations

from celery import Celery

from maoocr.config import Settings

GENERATE_TASK = "maoocr.generate"
OCR_SPLIT_TASK = "maoocr.ocr.split"
OCR_PAGE_TASK = "maoocr.ocr.page"
OCR_ASSEMBLE_TASK = "maoocr.ocr.assemble"


def create_celery_app(settings: Settings, prefetch_multiplier: int = 1) -> Celery:
    # The result backend only carries OCR pages into their chord; job results live in the job record.
    app = Celery("maoocr", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle: a message is data, not code
        result_serializer="json",
        task_ignore_result=True,  # results live in the job record; only chord parts keep theirs
        result_expires=settings.ttls.job_s,
        task_acks_late=True,  # ack after the job ends, so a dead worker's jobs are delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=prefetch_multiplier,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        task_default_queue=settings.queues.llm_queue(settings.default_model),
        # Task events cost ~10 % of an LLM worker's main thread; Flower turns them on when it runs.
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
    )
    return app
