"""`POST /api/generate`: queue a generation job (202) or, with `"wait": true`, answer with its text."""

from __future__ import annotations

from flask import Blueprint, url_for

from api.auth import current_owner
from api.requests import parse_body
from api.services import services
from maoocr.protocol.api import GenerateRequest, GenerateResponse, JobAccepted
from maoocr.protocol.jobs import JobRecord

bp = Blueprint("generate", __name__)


def accepted(record: JobRecord):
    body = JobAccepted(job_id=record.id, status=record.status,
                       status_url=url_for("jobs.get_job", job_id=record.id),
                       events_url=url_for("jobs.job_events", job_id=record.id))
    return body.model_dump(), 202, {"Location": body.status_url}


@bp.post("/api/generate")
def generate():
    svc = services()
    req = parse_body(GenerateRequest)
    params = req.to_params(svc.settings.default_model, min(256, svc.settings.limits.max_tokens))
    record = svc.submit_generation(params, owner=current_owner(), webhook_url=req.webhook_url)
    if not req.wait:
        return accepted(record)
    result = svc.wait_generation(record.id)
    return GenerateResponse(job_id=record.id, text=result.text, model=result.model,
                            finish_reason=result.choices[0].finish_reason, usage=result.usage).model_dump()
