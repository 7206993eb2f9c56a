"""`POST /v1/documents`: upload a document for OCR (202 + job id; its result: `GET /v1/jobs/<id>/result`)."""

from __future__ import annotations

from flask import Blueprint, request

from api.auth import current_owner
from api.generate import accepted
from api.services import services
from maoocr.errors import InvalidRequest
from maoocr.protocol.ocr import OCROptions
from maoocr.tasks import ocr_split_message

bp = Blueprint("documents", __name__)


@bp.post("/v1/documents")
def upload():
    svc = services()
    upload = request.files.get("file")
    if upload is None:
        raise InvalidRequest("send the document as multipart/form-data in a field named 'file'")
    options = OCROptions.model_validate(_form_options())
    owner = current_owner()
    webhook_url = svc.webhook_for(request.form.get("webhook_url") or None, owner)
    record, pages = svc.ocr.accept(upload.read(), options, ocr_split_message, owner=owner, webhook_url=webhook_url,
                                   priority=_form_priority())
    body, status, headers = accepted(record)
    body["pages"] = pages
    return body, status, headers


def _form_options() -> dict:
    form = request.form
    options: dict = {}
    for key in ("strategy", "output", "keep_headers"):
        if key in form:
            options[key] = form[key]
    if "languages" in form:
        options["languages"] = [lang.strip() for lang in form["languages"].split(",") if lang.strip()]
    if "pages" in form:  # "3" or "2-5"
        first, _, last = form["pages"].partition("-")
        try:
            options["first_page"] = int(first)
            options["last_page"] = int(last or first)
        except ValueError:
            raise InvalidRequest(f"pages must look like '3' or '2-5', not {form['pages']!r}") from None
    for key in ("first_page", "last_page"):
        if key in form:
            options[key] = form[key]
    return options


def _form_priority() -> int | str | None:
    """The form's `priority`: 0-9, 'interactive' or 'bulk' (`maoocr ingest` sends 'bulk'); none: the default."""
    value = request.form.get("priority", "").strip()
    if not value:
        return None
    if value in ("interactive", "bulk"):
        return value
    if value.isdigit() and 0 <= int(value) <= 9:
        return int(value)
    raise InvalidRequest(f"priority must be 0 (first) to 9 (last), 'interactive' or 'bulk', not {value[:40]!r}")
