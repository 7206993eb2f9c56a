"""The OpenAI Batch API: files (`/v1/files`) and batches (`/v1/batches`), each owned by the API key that made it."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.auth import current_owner
from api.requests import parse_body
from api.services import services
from maoocr.errors import InvalidRequest
from maoocr.protocol.batches import BatchCreateRequest

bp = Blueprint("batches", __name__)

MAX_LIST_LIMIT = 100  # OpenAI's bound on `limit`


@bp.post("/v1/files")
def upload_file():
    purpose = request.form.get("purpose")
    if purpose != "batch":
        raise InvalidRequest(f"purpose {purpose!r} is not supported: this server keeps files for the Batch API "
                             "only (purpose 'batch')")
    upload = request.files.get("file")
    if upload is None:
        raise InvalidRequest("send the file as the multipart field 'file' (with a field 'purpose': 'batch')")
    svc = services()
    content = upload.read(svc.settings.batches.max_file_bytes + 1)  # one byte more tells a file too big
    return svc.files.upload(content, upload.filename or "batch.jsonl", current_owner()).model_dump()


@bp.get("/v1/files/<file_id>")
def get_file(file_id: str):
    return services().files.get(file_id, current_owner()).model_dump()


@bp.get("/v1/files/<file_id>/content")
def file_content(file_id: str):
    return Response(services().files.content(file_id, current_owner()), mimetype="application/jsonl")


@bp.delete("/v1/files/<file_id>")
def delete_file(file_id: str):
    return services().files.delete(file_id, current_owner()).model_dump()


@bp.post("/v1/batches")
def create_batch():
    req = parse_body(BatchCreateRequest)
    svc = services()
    owner = current_owner()
    return svc.batches.create(req, svc.files.get(req.input_file_id, owner), owner).model_dump()


@bp.get("/v1/batches")
def list_batches():
    raw = request.args.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest(f"limit must be an integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
    return services().batches.list(current_owner(), request.args.get("after") or None, limit).model_dump()


@bp.get("/v1/batches/<batch_id>")
def get_batch(batch_id: str):
    return services().batches.get(batch_id, current_owner()).model_dump()


@bp.post("/v1/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str):
    return services().batches.cancel(batch_id, current_owner()).model_dump()
