"""Celery tasks of the OCR pipeline: split → one task per page, in parallel → assemble (a chord)."""

from __future__ import annotations

from celery import Celery, chord

from maoocr.generation.call import QueuedGeneration
from maoocr.pipeline.ocr_job import OCRJobs
from maoocr.protocol.ocr import OCRTask, PageResult
from maoocr.tasks import OCR_ASSEMBLE_TASK, OCR_PAGE_TASK, OCR_SPLIT_TASK, generation_message


def register_ocr_tasks(app: Celery, ocr_jobs: OCRJobs, queue: str) -> None:
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

    @app.task(name=OCR_PAGE_TASK, ignore_result=False)
    def page(payload: dict, index: int) -> dict:
        task = OCRTask.model_validate(payload)
        return ocr_jobs.run_page(task.job_id, task.options, index).model_dump(mode="json")

    @app.task(name=OCR_ASSEMBLE_TASK, ignore_result=True)
    def assemble(pages: list[dict], payload: dict) -> None:
        task = OCRTask.model_validate(payload)
        ocr_jobs.finish(task.job_id, [PageResult.model_validate(p) for p in pages])
