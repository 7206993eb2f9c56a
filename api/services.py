"""What the blueprints share: settings and Redis stores, made once per app. Jobs are queued by task name
(`maoocr.tasks`): the API builds no Celery app."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from flask import current_app

from maoocr.batches.files import FileStore
from maoocr.batches.store import BatchStore
from maoocr.config import Settings
from maoocr.errors import JobNotFound
from maoocr.generation.submit import submit_generation, wait_generation
from maoocr.pipeline.ocr_job import OCRJobs
from maoocr.protocol.generation import GenerationParams, GenerationResult, StreamChunk
from maoocr.protocol.jobs import JobRecord
from maoocr.store.client import connect
from maoocr.store.jobs import JobStore
from maoocr.store.streams import StreamStore
from maoocr.tasks import generation_message
from maoocr.webhooks.targets import webhook_for_job

END_CHUNK_GRACE_S = 5.0


@dataclass
class Services:
    settings: Settings
    jobs: JobStore
    streams: StreamStore
    ocr: OCRJobs
    files: FileStore
    batches: BatchStore

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        client = connect(settings.redis_url)
        jobs = JobStore(client, settings.ttls.job_s, settings.redis_wait_replicas, settings.redis_wait_timeout_ms)
        streams = StreamStore(client, settings.ttls.stream_s)
        ocr = OCRJobs(settings, jobs, streams, connect(settings.redis_url, decode=False))
        return cls(settings, jobs, streams, ocr, FileStore(client, settings.batches),
                   BatchStore(client, settings.batches))

    def submit_generation(self, params: GenerationParams, owner: str | None = None,
                          webhook_url: str | None = None) -> JobRecord:
        # Record and task message in one atomic Redis step, the message built without Celery's producer
        # (maoocr/tasks.py says why).
        return submit_generation(self.settings, self.jobs, params, generation_message, owner,
                                 self.webhook_for(webhook_url, owner))

    def webhook_for(self, requested: str | None, owner: str | None) -> str | None:
        return webhook_for_job(self.settings.webhooks, requested, owner)

    def follow(self, job_id: str, after: int = -1) -> Iterator[StreamChunk]:
        """A job's chunks, replayed then live, until it ends (or its record says it ended without an end chunk)."""

        def over() -> bool:
            # Ended without an end chunk (a worker vanished, the stream expired)? Give the worker's stream
            # writer a grace period first: the record is written just before the end chunk.
            try:
                record = self.jobs.get(job_id)
            except JobNotFound:
                return True
            return record.terminal and time.time() - (record.finished_at or 0) > END_CHUNK_GRACE_S

        return self.streams.follow(job_id, after, timeout_s=self.settings.limits.wait_timeout_s, is_over=over)

    def wait_generation(self, job_id: str) -> GenerationResult:
        return wait_generation(self.jobs, job_id, self.settings.limits.wait_timeout_s)


def services() -> Services:
    return current_app.extensions["maoocr"]
