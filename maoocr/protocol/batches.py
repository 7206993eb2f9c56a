"""The Batch API's wire models, shaped as OpenAI's: file objects, batch objects, a batch's input line and the lines
of its output and error files."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from maoocr.protocol.openai import ErrorBody

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
ENDED: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})
FilePurpose = Literal["batch", "batch_output"]


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class BatchRequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchCreateRequest(BaseModel):
    # OpenAI's clients send fields this server does not use (output_expires_after); they are ignored.
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(..., min_length=1)
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _openai_metadata(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        if metadata is None:
            return None
        if len(metadata) > 16:
            raise ValueError(f"at most 16 keys, got {len(metadata)}")
        for key, value in metadata.items():
            if len(key) > 64 or len(value) > 512:
                raise ValueError(f"key {key[:64]!r}: keys hold up to 64 characters and values up to 512")
        return metadata


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchRequestLine(BaseModel):
    """One line of an input file: a request to `url`, answered under `custom_id`."""

    custom_id: str = Field(..., min_length=1)
    method: str
    url: str
    body: dict[str, Any]


class BatchResponse(BaseModel):
    status_code: int
    request_id: str | None = None
    body: dict[str, Any]


class BatchAnswerLine(BaseModel):
    """One line of an output file (`response` with status 200, `error` null) or of an error file (`error` set;
    `response` holds what the endpoint answered, or null when the request never reached it)."""

    id: str
    custom_id: str | None
    response: BatchResponse | None = None
    error: ErrorBody | None = None
