"""A Batch API input file, line by line: the limits an upload must keep, and each line checked and turned into the
GenerationParams of its request. A bad line fails alone (`BadLine`); only a file that is no JSONL at all fails whole."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from maoocr.config import BatchSettings, Settings
from maoocr.errors import InvalidRequest, MaoOCRError, PayloadTooLarge
from maoocr.protocol.generation import GenerationParams
from maoocr.protocol.openai import DEFAULT_MAX_TOKENS, ChatCompletionRequest, CompletionRequest

_REQUESTS = {"/v1/chat/completions": ChatCompletionRequest, "/v1/completions": CompletionRequest}


class BadLine(MaoOCRError):
    """A line that cannot run. `http_status` is set when the request reached the endpoint's checks (its body was
    refused, as the endpoint itself would answer); None when the line never got that far."""

    http_status = None  # type: ignore[assignment]

    def __init__(self, code: str, message: str, custom_id: str | None, http_status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.custom_id = custom_id
        self.http_status = http_status  # type: ignore[assignment]


@dataclass
class LineRequest:
    custom_id: str
    params: GenerationParams


def split_upload(content: bytes, limits: BatchSettings) -> list[str]:
    """The lines of an uploaded batch input file (blank ones dropped), or why the file is refused."""
    if len(content) > limits.max_file_bytes:
        raise PayloadTooLarge(f"the file is {len(content)} bytes, above the limit of {limits.max_file_bytes} "
                              "(batches.max_file_bytes)")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the file is not UTF-8 text (byte {exc.start}): a batch input file is JSONL, "
                             "one JSON request per line") from None
    lines = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        size = len(line.encode("utf-8"))
        if size > limits.max_line_bytes:
            raise PayloadTooLarge(f"line {number} is {size} bytes, above the limit of {limits.max_line_bytes} "
                                  "(batches.max_line_bytes)")
        lines.append(line)
        if len(lines) > limits.max_lines:
            raise InvalidRequest(f"the file holds more than {limits.max_lines} requests, the limit per batch "
                                 "(batches.max_lines): split it into several batches")
    if not lines:
        raise InvalidRequest("the file is empty: a batch input file holds one JSON request per line")
    if not any(_json_object(line) for line in lines):
        raise InvalidRequest("no line of the file is a JSON object: a batch input file is JSONL, one request per "
                             'line, such as {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", '
                             '"body": {...}}')
    return lines


def parse_line(raw: str, endpoint: str, settings: Settings) -> LineRequest:
    """A line's custom_id and generation parameters, or BadLine. The server's own limits (model, max_tokens) are
    checked when the line is queued."""
    data = _json_object(raw)
    if data is None:
        raise BadLine("invalid_json", "the line is not a JSON object", None)
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise BadLine("missing_custom_id", "the line has no custom_id (a non-empty string naming its answer)", None)
    if data.get("method") != "POST":
        raise BadLine("invalid_method", f"method must be POST, not {data.get('method')!r}", custom_id)
    if data.get("url") != endpoint:
        raise BadLine("invalid_url", f"url {data.get('url')!r} is not this batch's endpoint {endpoint!r}", custom_id)
    body = data.get("body")
    if not isinstance(body, dict):
        raise BadLine("invalid_request", "body must be a JSON object: the request to the endpoint", custom_id, 400)
    try:
        request = _REQUESTS[endpoint].model_validate(body)
        if request.stream:
            raise BadLine("invalid_request", "stream is not supported in a batch: each answer goes to the output "
                                             "file", custom_id, 400)
        params = _at_most_bulk(request.to_params(settings.default_model, DEFAULT_MAX_TOKENS), settings)
    except ValidationError as exc:
        raise BadLine("invalid_request", describe(exc), custom_id, 400) from None
    except BadLine:
        raise
    except MaoOCRError as exc:
        raise BadLine(exc.code, exc.message, custom_id, exc.http_status) from None
    return LineRequest(custom_id, params)


def _at_most_bulk(params: GenerationParams, settings: Settings) -> GenerationParams:
    """Batch work runs at bulk priority: a line may name a later priority (a higher number), never an earlier one,
    which would put it ahead of interactive requests."""
    bulk = settings.priorities.bulk
    if params.priority == "bulk" or (isinstance(params.priority, int) and params.priority >= bulk):
        return params
    return params.model_copy(update={"priority": None})  # the bulk default


def custom_id_of(raw: str) -> str | None:
    """The custom_id of any line, when it has one (an answer names it even for a line that cannot run)."""
    data = _json_object(raw)
    custom_id = data.get("custom_id") if data else None
    return custom_id if isinstance(custom_id, str) and custom_id else None


def describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors())


def _json_object(raw: str) -> dict | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
