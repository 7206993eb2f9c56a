"""The line a batch's request gets in its output file (it succeeded) or its error file (anything else), built from
the line's job record, or from why the line never ran."""

from __future__ import annotations

from typing import Literal, NamedTuple

from maoocr.errors import error_from_dict
from maoocr.protocol.batches import BatchAnswerLine, BatchResponse
from maoocr.protocol.generation import GenerationResult
from maoocr.protocol.jobs import JobRecord
from maoocr.protocol.openai import ErrorBody, full_chat_completion, full_completion

# The sync endpoints' answers: their id prefix and builder.
_BODIES = {"/v1/chat/completions": ("chatcmpl-", full_chat_completion), "/v1/completions": ("cmpl-", full_completion)}
# Why a line was stopped when its batch ended early (the batch's `end`).
_ENDED = {"cancelled": ("batch_cancelled", "the batch was cancelled before this request finished"),
          "expired": ("batch_expired", "the batch's completion window ended before this request finished")}


class Answer(NamedTuple):
    part: Literal["output", "error"]
    line: str  # one JSON line, without its line break


def answer_id(batch_id: str, index: int) -> str:
    return f"batch_req_{batch_id.removeprefix('batch_')}_{index}"


def job_answer(batch_id: str, index: int, custom_id: str | None, endpoint: str, record: JobRecord,
               end: str | None) -> Answer:
    """The answer of a line whose job has ended. `end`: the batch's early end, if it was cancelled or expired."""
    line_id = answer_id(batch_id, index)
    if record.status == "succeeded" and record.result is not None:
        prefix, build = _BODIES[endpoint]
        body = build(prefix + record.id, GenerationResult.model_validate(record.result)).model_dump(mode="json")
        response = BatchResponse(status_code=200, request_id=record.id, body=body)
        return Answer("output", BatchAnswerLine(id=line_id, custom_id=custom_id, response=response).model_dump_json())
    if record.status == "cancelled" and end in _ENDED:
        return stopped_answer(batch_id, index, custom_id, end)
    error = record.error.model_dump() if record.error else {"code": "internal_error",
                                                             "message": f"the job ended as {record.status}"}
    response = BatchResponse(status_code=_status_of(error), request_id=record.id, body={"error": error})
    return _error(line_id, custom_id, error["code"], error["message"], response)


def stopped_answer(batch_id: str, index: int, custom_id: str | None, end: str) -> Answer:
    """The answer of a line its batch's early end stopped (cancelled or expired) before it finished."""
    code, message = _ENDED[end]
    return _error(answer_id(batch_id, index), custom_id, code, message, None)


def bad_line_answer(batch_id: str, index: int, code: str, message: str, custom_id: str | None,
                    http_status: int | None) -> Answer:
    """The answer of a line that could not run: the endpoint's refusal when its body reached the checks."""
    response = None if http_status is None else BatchResponse(
        status_code=http_status, body={"error": {"code": code, "message": message}})
    return _error(answer_id(batch_id, index), custom_id, code, message, response)


def _error(line_id: str, custom_id: str | None, code: str, message: str, response: BatchResponse | None) -> Answer:
    line = BatchAnswerLine(id=line_id, custom_id=custom_id, response=response,
                           error=ErrorBody(code=code, message=message))
    return Answer("error", line.model_dump_json())


def _status_of(error: dict) -> int:
    if error.get("code") == "cancelled":
        return 499  # the request was cancelled before it was answered (nginx's client-closed status)
    return error_from_dict(error).http_status
