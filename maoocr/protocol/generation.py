"""What a generation job asks of an engine, and what comes back: parameters, stream chunks, results."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ImageUrl(BaseModel):
    url: str = Field(..., description="http(s) URL or a data: URL with base64 image bytes")


class ContentPart(BaseModel):
    """One part of a chat message: text or an image (OpenAI's format)."""

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[ContentPart] = ""

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


# A job's priority as a request names it (maoocr.priorities): 0 runs first, 9 last, or a server default by name.
Priority = Annotated[int, Field(ge=0, le=9)] | Literal["interactive", "bulk"]
PRIORITY_HELP = ("0 runs first, 9 last, in the queue and inside the engine; 'interactive' or 'bulk': the server's "
                 "default for such work; null: the default for the kind of request (and API key)")

MAX_CHOICES = 128  # OpenAI's own bound on n: each choice is a sequence in the engine's batch
GREEDY_BELOW = 1e-5  # vLLM samples greedily below this temperature (and then refuses n > 1)


class GenerationParams(BaseModel):
    """One generation request, as the engine sees it: a raw prompt or chat messages, and sampling settings."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="choices to generate; more than one needs temperature > 0")
    # Each stop string is checked after every token: a bound keeps one request from slowing the whole batch.
    stop: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, max_length=16)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="sampling seed (a 64-bit integer)")
    ignore_eos: bool = False
    json_schema: dict[str, Any] | None = Field(
        None, description="Constrain the output to JSON valid against this JSON Schema ({'type': 'object'}: any "
                          "JSON object). Invalid schemas are refused before the job is queued.")
    priority: Priority | None = Field(None, description=PRIORITY_HELP)

    @field_validator("json_schema")
    @classmethod
    def _schema_ints_fit_64_bits(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        # The engine ships the schema to its core process with msgpack, which has no bigger integers.
        if schema is not None and not _ints_fit(schema):
            raise ValueError("json_schema: every integer in the schema must fit in 64 bits")
        return schema

    @property
    def base_model(self) -> str:
        """The configured model that runs the request: `model` up to its ':' ('<model>:<LoRA adapter>')."""
        return self.model.split(":", 1)[0]

    @property
    def adapter(self) -> str | None:
        """The LoRA adapter `model` names after its ':', if any."""
        return self.model.split(":", 1)[1] if ":" in self.model else None

    @model_validator(mode="after")
    def _one_input(self) -> "GenerationParams":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.prompt is not None and not self.prompt:
            raise ValueError("'prompt' must not be empty")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        if self.n > 1 and self.temperature < GREEDY_BELOW:
            raise ValueError(f"'n' is {self.n}, but temperature {self.temperature} means greedy sampling, which has "
                             "one answer: ask for n = 1 or a temperature above 0")
        return self


def _ints_fit(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return all(_ints_fit(v) for v in value.values())
    if isinstance(value, list):
        return all(_ints_fit(v) for v in value)
    return True


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class StreamChunk(BaseModel):
    """One event on a job's stream (`maoocr:stream:<job_id>`).

    `seq` is assigned by Redis when the chunk is appended, so every chunk of a job has a unique, gap-free
    position whoever wrote it. `index` is the choice a token delta belongs to (n > 1). The last chunk of a job
    has `finished: true`, its `finish_reason` and, for generations, `usage`.
    """

    job_id: str
    seq: int = -1
    delta: str = ""
    finished: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    index: int = 0
    event: Literal["token", "progress", "end", "restart"] = "token"
    progress: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    # On a `restart` event: the job's attempt that starts here (its worker died). Drop the text received so
    # far for this job; the attempt's text follows from its beginning.
    attempt: int | None = None
    # Bench/debug only (setting `stream_timestamps`): epoch seconds at which the engine emitted this delta,
    # so a subscriber can time the hop engine → Redis → API → client on one machine's clock.
    emitted_at: float | None = None


class Choice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    completion_tokens: int = 0


class GenerationResult(BaseModel):
    model: str
    choices: list[Choice]
    usage: Usage

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


class GenerationTask(BaseModel):
    """The Celery payload of a generation job: JSON only, validated on both sides."""

    job_id: str
    params: GenerationParams
