"""GET /v1/usage: what API keys used, per UTC day and in total, per model for generations."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field


class ModelUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = Field(0, description="generation jobs that ended (a job cancelled while queued is not counted)")

    def add(self, other: "ModelUsage") -> None:
        for name in type(other).model_fields:
            if name in type(self).model_fields:
                setattr(self, name, getattr(self, name) + getattr(other, name))


class UsageTotals(ModelUsage):
    documents: int = Field(0, description="OCR jobs that ended")
    pages: int = Field(0, description="pages those OCR jobs processed")


class DayUsage(BaseModel):
    day: date
    totals: UsageTotals
    models: dict[str, ModelUsage] = Field(description="model name → its generations' usage that day")


class OwnerUsage(BaseModel):
    owner: str = Field(description="the API key id (first 16 hex digits of its sha256), or 'anonymous' for jobs "
                                   "made while auth was off")
    totals: UsageTotals = Field(description="the whole range")
    models: dict[str, ModelUsage] = Field(description="model name → its generations' usage over the range")
    days: list[DayUsage] = Field(description="the days with usage, oldest first")


class UsageReport(BaseModel):
    object: Literal["usage"] = "usage"
    start: date
    end: date = Field(description="inclusive")
    owners: list[OwnerUsage] = Field(description="one per key with usage in the range (a key sees only itself)")
