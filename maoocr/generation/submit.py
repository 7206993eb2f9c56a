"""Submitting a generation job: check it, then create its record and queue its task in one atomic Redis step."""

from __future__ import annotations

from maoocr.config import Settings
from maoocr.generation.validate import validate_params
from maoocr.jobs import JobStore, TaskMessage, new_job_id
from maoocr.protocol.generation import GenerationParams, GenerationTask
from maoocr.protocol.jobs import JobRecord


def submit_generation(settings: Settings, jobs: JobStore, params: GenerationParams, message: TaskMessage,
                      owner: str | None = None) -> JobRecord:
    validate_params(params, settings)
    job_id = new_job_id()
    queue = settings.queues.llm_queue(params.model)
    payload = GenerationTask(job_id=job_id, params=params).model_dump(mode="json")
    return jobs.create("generation", model=params.model, owner=owner, job_id=job_id,
                       enqueue=(queue, message(payload, queue)))
