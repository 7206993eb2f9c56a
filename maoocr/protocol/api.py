"""Request and response models of MaoOCR's own REST endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from maoocr.protocol.generation import PRIORITY_HELP, GenerationParams, Priority, Usage


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    prompt: str = Field(..., min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="sampling seed (a 64-bit integer)")
    ignore_eos: bool = False
    json_schema: dict | None = Field(None, description="Constrain the output to JSON valid against this schema")
    wait: bool = Field(False, description="Hold the request until the job ends and answer with its text")
    webhook_url: str | None = Field(None, description="POSTed the job's record, signed, when the job ends")
    priority: Priority | None = Field(None, description=PRIORITY_HELP)

    def to_params(self, default_model: str, default_max_tokens: int) -> GenerationParams:
        return GenerationParams(prompt=self.prompt, model=self.model or default_model,
                                max_tokens=self.max_tokens or default_max_tokens, temperature=self.temperature,
                                top_p=self.top_p, stop=self.stop, seed=self.seed, ignore_eos=self.ignore_eos,
                                json_schema=self.json_schema, priority=self.priority)


class JobAccepted(BaseModel):
    job_id: str
    status: str
    status_url: str
    events_url: str


class GenerateResponse(BaseModel):
    job_id: str
    text: str
    model: str
    finish_reason: str | None
    usage: Usage
