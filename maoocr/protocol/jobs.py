"""The job record: a small state machine stored in Redis, the same shape the API returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
JobKind = Literal["generation", "ocr"]


class JobError(BaseModel):
    code: str
    message: str


class JobRecord(BaseModel):
    id: str
    kind: JobKind
    status: JobStatus
    model: str | None = None
    owner: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    priority: int | None = None  # 0 runs first, 9 last (maoocr.priorities)
    worker: str | None = None  # "<worker name> <instance token>" of the worker running (or last running) it
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    # Set when the job was submitted with a webhook (or its API key has a default one): where the job's end is
    # POSTed, and how that delivery went (pending until it is delivered or given up).
    webhook_url: str | None = None
    webhook_status: Literal["pending", "delivered", "failed"] | None = None
    webhook_attempts: int | None = None
    webhook_error: str | None = None
    batch_id: str | None = None  # a Batch API line's job: its batch collects the answer when the job ends

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL
