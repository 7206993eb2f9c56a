"""Response models of the service's own status endpoints: health, readiness, uploads accepted, results pending."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from maoocr.protocol.api import JobAccepted
from maoocr.protocol.jobs import JobError, JobStatus


class Health(BaseModel):
    status: Literal["ok"]


class WorkerSummary(BaseModel):
    name: str | None = None
    kind: str | None = Field(None, description="llm, ocr or ocr-models")
    model: str | None = None
    queue: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    redis: str = Field(description="'up', or 'down: <reason>'")
    missing: list[str] = Field(default_factory=list, description="the workers readiness waits for, when not ready")
    workers: list[WorkerSummary]


class DocumentAccepted(JobAccepted):
    pages: int = Field(description="pages that will be processed (after the page range)")


class JobPending(BaseModel):
    """`GET /v1/jobs/<id>/result` before a result exists: 202 while the job runs, 409 once it ended without one."""

    job_id: str
    status: JobStatus
    progress: dict[str, Any] | None = None
    error: JobError | None = None
