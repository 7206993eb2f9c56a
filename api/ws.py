"""WebSocket `/ws/stream`: send `{"job_id": …}` to follow a job, or a generation request to start one."""

from __future__ import annotations

import json

from flask_sock import Sock
from pydantic import ValidationError

from api.auth import current_owner
from api.errors import describe_validation_error
from api.services import services
from maoocr.errors import InvalidRequest, MaoOCRError
from maoocr.protocol.api import GenerateRequest
from maoocr.protocol.openai import ChatCompletionRequest

sock = Sock()


@sock.route("/ws/stream")
def stream(ws) -> None:
    svc = services()
    try:
        message = json.loads(ws.receive(timeout=60) or "")
        if not isinstance(message, dict):
            raise InvalidRequest("send a JSON object: {\"job_id\": …} or a generation request")
        job_id = message.get("job_id") or _start_job(svc, message, current_owner())
        after = int(message.get("after", -1))
        svc.jobs.get(job_id, current_owner())  # another key's job is not found
    except (ValueError, TypeError, RecursionError) as exc:  # JSON and pydantic errors are both ValueErrors
        text = describe_validation_error(exc) if isinstance(exc, ValidationError) else f"bad message: {exc}"
        ws.send(json.dumps({"error": {"code": "invalid_request", "message": text}}))
        return
    except MaoOCRError as exc:
        ws.send(json.dumps({"error": exc.to_dict()}))
        return
    for chunk in svc.follow(job_id, after):
        ws.send(chunk.model_dump_json())


def _start_job(svc, message: dict, owner: str | None) -> str:
    model = ChatCompletionRequest if "messages" in message else GenerateRequest
    message = {k: v for k, v in message.items() if k not in ("after", "stream")}
    params = model.model_validate(message).to_params(svc.settings.default_model, 256)
    record = svc.submit_generation(params, owner=owner)
    return record.id
