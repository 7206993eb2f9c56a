"""`GET /v1/usage`: what API keys used per UTC day: a key sees its own usage, an admin key everyone's."""

from __future__ import annotations

from flask import Blueprint, request

from api.auth import current_owner, is_admin
from api.services import services
from maoocr.errors import MaoOCRError
from maoocr.store.usage import UsageStore
from maoocr.usage.report import date_range, usage_report

bp = Blueprint("usage", __name__)


@bp.get("/v1/usage")
def usage():
    start, end = date_range(request.args.get("start"), request.args.get("end"))
    asked = request.args.get("owner") or None
    if is_admin():
        owner = asked  # None: every key
    else:
        owner = current_owner()
        if asked is not None and asked != owner:
            raise MaoOCRError("only an admin key (auth.admin_keys) may read another key's usage", code="forbidden",
                              http_status=403)
    return usage_report(UsageStore(services().jobs.redis), start, end, owner).model_dump(mode="json")
