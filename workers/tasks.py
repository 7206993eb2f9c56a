"""Celery task functions: validate the JSON payload, hand it to maoocr, nothing else."""

from __future__ import annotations

from celery import Celery
from celery.exceptions import Reject

from maoocr.generation.host import EngineHost, HandedBack
from maoocr.protocol.generation import GenerationTask
from maoocr.tasks import GENERATE_TASK


def register_generation_task(app: Celery, host: EngineHost) -> None:
    @app.task(name=GENERATE_TASK, ignore_result=True)
    def generate(payload: dict) -> None:
        try:
            host.run_job(GenerationTask.model_validate(payload))
        except HandedBack:
            raise Reject("worker stopping: job handed back", requeue=True) from None
