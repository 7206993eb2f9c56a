"""Job status, result (an OCR document in the asked format), cancellation, and a job's events as SSE (replay from
any point, then live)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.auth import current_owner
from api.services import services
from api.sse import event, sse_response
from maoocr.errors import InvalidRequest
from maoocr.protocol.ocr import DocumentResult

bp = Blueprint("jobs", __name__)


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str):
    return services().jobs.get(job_id, current_owner()).model_dump()


@bp.get("/v1/jobs/<job_id>/result")
def result(job_id: str):
    record = services().jobs.get(job_id, current_owner())
    if record.status != "succeeded" or record.result is None:
        return {"job_id": job_id, "status": record.status, "progress": record.progress,
                "error": record.error.model_dump() if record.error else None}, 202 if not record.terminal else 409
    if record.kind != "ocr":
        return record.result
    doc = DocumentResult.model_validate(record.result)
    fmt = request.args.get("format", "json")
    if fmt == "text":
        return Response(doc.text, mimetype="text/plain; charset=utf-8")
    if fmt == "markdown":
        return Response(doc.markdown, mimetype="text/markdown; charset=utf-8")
    if fmt != "json":
        raise InvalidRequest(f"format must be json, text or markdown, not {fmt!r}")
    return doc.model_dump(mode="json")


@bp.delete("/v1/jobs/<job_id>")
def cancel_job(job_id: str):
    svc = services()
    return svc.jobs.cancel(job_id, svc.streams, current_owner()).model_dump()


@bp.get("/v1/jobs/<job_id>/events")
def job_events(job_id: str):
    svc = services()
    svc.jobs.get(job_id, current_owner())  # 404 before a stream starts (and for another key's job)
    after = request.headers.get("Last-Event-ID", request.args.get("after", "-1"))
    try:
        after_seq = int(after)
    except ValueError:
        raise InvalidRequest(f"Last-Event-ID / after must be an integer seq, got {after!r}") from None
    chunks = svc.follow(job_id, after_seq)
    return sse_response(event(c.model_dump_json(), event_id=c.seq, name=c.event) for c in chunks)
