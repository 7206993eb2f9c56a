"""Submitting a generation job (check it, then create its record and queue its task in one atomic Redis step), and
waiting for its answer."""

from __future__ import annotations

from maoocr.config import Settings
from maoocr.errors import error_from_dict
from maoocr.generation.validate import validate_params
from maoocr.priorities import job_priority, queue_list
from maoocr.protocol.generation import GenerationParams, GenerationResult, GenerationTask
from maoocr.protocol.jobs import JobRecord
from maoocr.store.jobs import JobStore, new_job_id
from maoocr.tasks import TaskMessage
from maoocr.usage.quotas import enforce_quotas


def submit_generation(settings: Settings, jobs: JobStore, params: GenerationParams, message: TaskMessage,
                      owner: str | None = None, webhook_url: str | None = None, bulk: bool = False,
                      job_id: str | None = None, batch_id: str | None = None) -> JobRecord:
    """Queue `params` as a new job (`job_id`, or a fresh one). Its priority: the one `params` names, else the
    default of bulk work (`bulk`) or of the owner's interactive requests."""
    validate_params(params, settings)
    if batch_id is None:  # a batch's lines were accepted with the batch
        enforce_quotas(settings, jobs.redis, owner)
    job_id = job_id or new_job_id()
    priority = job_priority(settings.priorities, params.priority, owner, bulk)
    params = params.model_copy(update={"priority": priority})
    queue = settings.queues.llm_queue(params.base_model)  # an adapter's jobs batch with its base model's
    payload = GenerationTask(job_id=job_id, params=params).model_dump(mode="json")
    return jobs.create("generation", model=params.model, owner=owner, job_id=job_id, priority=priority,
                       enqueue=(queue_list(queue, priority), message(payload, queue, priority)),
                       webhook_url=webhook_url, batch_id=batch_id)


def wait_generation(jobs: JobStore, job_id: str, timeout_s: float) -> GenerationResult:
    """Block until the job ends; its result, or its error raised as the MaoOCRError it was stored from (so a
    transport answers with the original status). TimeoutError when it has not ended within `timeout_s`."""
    record = jobs.wait(job_id, timeout_s)
    if record.status != "succeeded" or record.result is None:
        raise error_from_dict(record.error.model_dump() if record.error else
                              {"code": "internal_error", "message": f"job ended as {record.status}"})
    return GenerationResult.model_validate(record.result)
