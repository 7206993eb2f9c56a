"""What the blueprints share: settings, Redis stores and the Celery producer, made once per app."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from celery import Celery
from flask import current_app

from maoocr.config import Settings
from maoocr.errors import JobNotFound, error_from_dict
from maoocr.generation.submit import submit_generation
from maoocr.jobs import JobStore
from maoocr.pipeline.ocr_job import OCRJobs
from maoocr.protocol.generation import GenerationParams, GenerationResult, StreamChunk
from maoocr.protocol.jobs import JobRecord
from maoocr.redis_client import connect
from maoocr.streams import StreamStore
from workers.celery_app import create_celery_app
from workers.task_message import generation_message

END_CHUNK_GRACE_S = 5.0


@dataclass
class Services:
    settings: Settings
    jobs: JobStore
    streams: StreamStore
    celery: Celery
    ocr: OCRJobs

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        client = connect(settings.redis_url)
        jobs, streams = JobStore(client, settings.ttls.job_s), StreamStore(client, settings.ttls.stream_s)
        celery = create_celery_app(settings)
        return cls(settings, jobs, streams, celery,
                   OCRJobs(settings, jobs, streams, connect(settings.redis_url, decode=False)))

    def submit_generation(self, params: GenerationParams, owner: str | None = None) -> JobRecord:
        # Record and task message in one atomic Redis step, the message built without Celery's producer
        # (workers/task_message.py says why).
        return submit_generation(self.settings, self.jobs, params, generation_message, owner)

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
        """Block until the job ends; its result, or its error raised with the original status."""
        record = self.jobs.wait(job_id, self.settings.limits.wait_timeout_s)
        if record.status != "succeeded" or record.result is None:
            raise error_from_dict(record.error.model_dump() if record.error else
                                  {"code": "internal_error", "message": f"job ended as {record.status}"})
        return GenerationResult.model_validate(record.result)


def services() -> Services:
    return current_app.extensions["maoocr"]
