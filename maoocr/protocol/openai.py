"""OpenAI-compatible request and response models. Stream chunks are built from the same parts as full responses."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from maoocr.errors import InvalidRequest
from maoocr.protocol.generation import (MAX_CHOICES, PRIORITY_HELP, ChatMessage, GenerationParams, GenerationResult,
                                       Priority, Usage)


DEFAULT_MAX_TOKENS = 256  # for a request that names no max_tokens


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: free text, any JSON object, or JSON valid against a given schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def to_json_schema(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "object"}
        if self.json_schema is None or self.json_schema.schema_ is None:
            raise InvalidRequest("response_format of type json_schema needs json_schema.schema "
                                 '({"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}})')
        return self.json_schema.schema_


class _SamplingRequest(BaseModel):
    # Clients send fields we do not use (user, logit_bias, …); ignoring them is what OpenAI-compatible servers do.
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="sampling seed (a 64-bit integer)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM extension: generate exactly max_tokens
    response_format: ResponseFormat | None = None
    priority: Priority | None = Field(None, description=PRIORITY_HELP)  # vLLM's server has it too (an integer)

    def _sampling(self, default_model: str, default_max_tokens: int) -> dict:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return dict(model=self.model or default_model, max_tokens=self.max_tokens or default_max_tokens,
                    temperature=self.temperature, top_p=self.top_p, n=self.n, stop=stop, seed=self.seed,
                    ignore_eos=self.ignore_eos, priority=self.priority,
                    json_schema=self.response_format.to_json_schema() if self.response_format else None)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def to_params(self, default_model: str, default_max_tokens: int) -> GenerationParams:
        sampling = self._sampling(default_model, default_max_tokens)
        if self.max_completion_tokens is not None:
            sampling["max_tokens"] = self.max_completion_tokens
        return GenerationParams(messages=self.messages, **sampling)


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str]

    def to_params(self, default_model: str, default_max_tokens: int) -> GenerationParams:
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise InvalidRequest("'prompt' as a list must hold exactly one string (send one request per prompt)")
            prompt = prompt[0]
        return GenerationParams(prompt=prompt, **self._sampling(default_model, default_max_tokens))


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: None = None


class _Response(BaseModel):
    id: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str


class ChatCompletion(_Response):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage


class ChatCompletionChunk(_Response):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class Completion(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage | None = None


def full_chat_completion(response_id: str, result: GenerationResult) -> ChatCompletion:
    """The answer to a chat completion request that does not stream (also a Batch API line's body)."""
    return ChatCompletion(id=response_id, model=result.model, usage=result.usage, choices=[
        ChatChoice(index=c.index, message=AssistantMessage(content=c.text), finish_reason=c.finish_reason)
        for c in result.choices])


def full_completion(response_id: str, result: GenerationResult) -> Completion:
    """The answer to a text completion request that does not stream (also a Batch API line's body)."""
    return Completion(id=response_id, model=result.model, usage=result.usage, choices=[
        CompletionChoice(index=c.index, text=c.text, finish_reason=c.finish_reason) for c in result.choices])


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "maoocr"
    max_model_len: int
    model_type: str
    workers: int = Field(0, description="Workers serving this model right now")
    parent: str | None = Field(None, description="A LoRA adapter's base model (as vLLM's server lists adapters)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
