"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Redis up and the workers a request needs).

`/readyz` is 200 when the default model's LLM worker and an OCR worker are alive (and a model-steps worker
when OCR pages call models), so a load balancer or `maoocr up` sends no traffic before both kinds of job can run.
`/readyz?model=NAME` asks for that model's LLM worker alone (a model the OCR pipeline calls, or an LLM-only
deployment).
"""

from __future__ import annotations

import redis
from flask import Blueprint, request

from api.services import services
from maoocr.errors import ModelNotFound
from maoocr.protocol.status import Readiness, WorkerSummary
from maoocr.store.heartbeats import live_workers

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    settings = services().settings
    model = request.args.get("model")
    if model is not None and model not in settings.models.models:
        raise ModelNotFound(f"model {model!r} is not in the models file")
    try:
        client = services().jobs.redis
        client.ping()
        workers = live_workers(client)
    except redis.RedisError as exc:
        return Readiness(status="unavailable", redis=f"down: {exc}", workers=[]).model_dump(), 503
    queues = {w.get("queue") for w in workers}
    wanted = model or settings.default_model
    missing = [] if settings.queues.llm_queue(wanted) in queues else [f"an LLM worker for model {wanted!r}"]
    if model is None and settings.queues.ocr not in queues:
        missing.append("an OCR worker")
    if model is None and settings.ocr_calls_models and settings.queues.ocr_models not in queues:
        missing.append("a model-steps worker (maoocr worker --ocr-models)")
    body = Readiness(status="unavailable" if missing else "ready", redis="up", missing=missing,
                     workers=[WorkerSummary.model_validate(w) for w in workers])
    return body.model_dump(), 503 if missing else 200
