"""Celery tasks of the OCR pipeline: split → one task per page, in parallel → assemble (a chord).

A page whose next step waits on a model (VLM OCR, VLM analysis, LLM selection) is replaced, inside the chord, by a
task on the model-steps queue, served by threads (`maoocr worker --ocr-models`): the OCR worker's processes go on
with PP-OCR pages meanwhile. A page the model steps leave to PP-OCR (so chosen, or the VLM failed) comes back the
same way, with its decision. Celery's `replace` keeps the replacement in the chord under the page's task id.
"""

from __future__ import annotations

from celery import Celery, chord

from maoocr.generation.call import QueuedGeneration
from maoocr.pipeline.ocr_job import OCRJobs
from maoocr.priorities import task_priority
from maoocr.protocol.ocr import OCRTask, PageDecision, PageHandOff, PageResult
from maoocr.tasks import OCR_ASSEMBLE_TASK, OCR_PAGE_MODELS_TASK, OCR_PAGE_TASK, OCR_SPLIT_TASK, generation_message


def register_ocr_tasks(app: Celery, ocr_jobs: OCRJobs, queue: str, models_queue: str) -> None:
    if ocr_jobs.generate is None:
        # Model calls of the page pipeline (VLM OCR, VLM analysis, LLM selection) become generation jobs on the
        # model's queue, by task name: this worker never loads an engine.
        ocr_jobs.generate = QueuedGeneration(ocr_jobs.settings, ocr_jobs.jobs, ocr_jobs.streams, generation_message)

    @app.task(name=OCR_SPLIT_TASK, ignore_result=True)
    def split(payload: dict) -> None:
        task = OCRTask.model_validate(payload)
        pages = ocr_jobs.start(task.job_id, task.options)
        if pages is None:
            return
        header = [page.s(payload, i).set(queue=queue) for i in range(pages)]
        chord(header)(assemble.s(payload).set(queue=queue))
        ocr_jobs.fanned_out(task.job_id)

    @app.task(name=OCR_PAGE_TASK, ignore_result=False, bind=True)
    def page(self, payload: dict, index: int, decided: dict | None = None) -> dict:
        task = OCRTask.model_validate(payload)
        inherit_priority(self.request)
        outcome = ocr_jobs.run_page(task.job_id, task.options, index,
                                    None if decided is None else PageDecision.model_validate(decided))
        if isinstance(outcome, PageHandOff):
            return self.replace(page_models.s(payload, index, outcome.model_dump(mode="json")).set(queue=models_queue))
        return outcome.model_dump(mode="json")

    @app.task(name=OCR_PAGE_MODELS_TASK, ignore_result=False, bind=True)
    def page_models(self, payload: dict, index: int, hand_off: dict) -> dict:
        task = OCRTask.model_validate(payload)
        inherit_priority(self.request)
        outcome = ocr_jobs.run_page_models(task.job_id, task.options, index, PageHandOff.model_validate(hand_off))
        if isinstance(outcome, PageDecision):
            return self.replace(page.s(payload, index, outcome.model_dump(mode="json")).set(queue=queue))
        return outcome.model_dump(mode="json")

    @app.task(name=OCR_ASSEMBLE_TASK, ignore_result=True)
    def assemble(pages: list[dict], payload: dict) -> None:
        task = OCRTask.model_validate(payload)
        ocr_jobs.finish(task.job_id, [PageResult.model_validate(p) for p in pages])


def inherit_priority(request) -> None:
    """The document's priority (its split's, which its page tasks inherit: `task_inherit_parent_priority`) for
    the model calls this page queues."""
    priority = (request.delivery_info or {}).get("priority")
    task_priority.set(priority if isinstance(priority, int) else None)
