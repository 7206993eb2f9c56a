"""OpenAI-compatible endpoints, served through the job queue: chat and text completions (plain and SSE), models."""

from __future__ import annotations

import json
from typing import Callable, Iterator

from flask import Blueprint

from api.auth import current_owner
from api.requests import parse_body
from api.services import services
from api.sse import event, sse_response
from maoocr.errors import MaoOCRError, error_from_dict
from maoocr.protocol.generation import StreamChunk
from maoocr.protocol.openai import (DEFAULT_MAX_TOKENS, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest,
                                    CompletionChoice, CompletionChunk, CompletionRequest, DeltaMessage, ModelCard,
                                    ModelList, full_chat_completion, full_completion)
from maoocr.store.heartbeats import live_workers

bp = Blueprint("openai", __name__)


@bp.post("/v1/chat/completions")
def chat_completions():
    req = parse_body(ChatCompletionRequest)
    return _serve(req, "chatcmpl-", full_chat_completion, _chat_chunk, ChatCompletionChunk)


@bp.post("/v1/completions")
def completions():
    req = parse_body(CompletionRequest)
    return _serve(req, "cmpl-", full_completion, _completion_chunk, CompletionChunk)


@bp.post("/tokenize")
@bp.post("/detokenize")
def tokenizer_not_served():
    # vLLM's server has these; its benchmark client probes /tokenize and carries on without it on any error.
    # The API holds no tokenizer (the workers do), so the answer is a plain 404 that says so.
    raise MaoOCRError("this API does not tokenize: count tokens with the model's own tokenizer, or read "
                      "`usage` in a completion's answer", code="not_found", http_status=404)


@bp.get("/v1/models")
def models():
    settings = services().settings
    serving: dict[str, int] = {}
    for worker in live_workers(services().jobs.redis):
        serving[worker.get("model", "")] = serving.get(worker.get("model", ""), 0) + 1
    cards = []
    for name, cfg in settings.models.models.items():
        common = dict(max_model_len=cfg.max_model_len, model_type=cfg.model_type, workers=serving.get(name, 0))
        cards.append(ModelCard(id=name, **common))
        cards += [ModelCard(id=f"{name}:{adapter}", parent=name, **common) for adapter in cfg.lora_adapters]
    return ModelList(data=cards).model_dump()


def _serve(req, id_prefix: str, full: Callable, chunk_choice: Callable, chunk_cls):
    svc = services()
    params = req.to_params(svc.settings.default_model, DEFAULT_MAX_TOKENS)
    record = svc.submit_generation(params, owner=current_owner())
    response_id = id_prefix + record.id
    if not req.stream:
        return full(response_id, svc.wait_generation(record.id)).model_dump()

    chunks = svc.follow(record.id)
    first = next(chunks)
    if first.finished and first.error:
        # Failed before any token (e.g. the prompt is too long): answer with a real HTTP error, not a 200 stream.
        raise error_from_dict(first.error)
    return sse_response(_openai_events(_prepend(first, chunks), response_id, params.model, params.n,
                                       req.include_usage, chunk_choice, chunk_cls))


def _openai_events(chunks: Iterator[StreamChunk], response_id: str, model: str, n: int, include_usage: bool,
                   chunk_choice: Callable, chunk_cls) -> Iterator[str]:
    started: set[int] = set()
    finished: set[int] = set()
    for chunk in chunks:
        if chunk.event == "end":
            if chunk.error:
                yield event(json.dumps({"error": chunk.error}))
                break
            for index in range(n):  # choices cut short (cancel) still get a finish_reason
                if index not in finished:
                    yield _frame(chunk_cls, response_id, model, [chunk_choice(index, "", chunk.finish_reason, True)])
            if include_usage and chunk.usage is not None:
                yield event(chunk_cls(id=response_id, model=model, choices=[], usage=chunk.usage).model_dump_json())
            break
        if chunk.event == "restart":
            # The worker died and the job started over with different text: an OpenAI stream cannot take back
            # what it sent, so it ends here with the reason; the job's record will hold the full answer.
            yield event(json.dumps({"error": {
                "code": "stream_restarted",
                "message": f"the worker serving this stream died; the job restarted (attempt {chunk.attempt}) "
                           f"and its text differs from what was streamed: read it at "
                           f"/v1/jobs/{response_id.split('-', 1)[1]}"}}))
            break
        first = chunk.index not in started
        started.add(chunk.index)
        if chunk.finish_reason is not None:
            finished.add(chunk.index)
        yield _frame(chunk_cls, response_id, model, [chunk_choice(chunk.index, chunk.delta, chunk.finish_reason, not first)])
    yield event("[DONE]")


def _frame(chunk_cls, response_id: str, model: str, choices: list) -> str:
    return event(chunk_cls(id=response_id, model=model, choices=choices).model_dump_json(exclude_none=False))


def _chat_chunk(index: int, text: str, finish_reason: str | None, continued: bool) -> ChatChunkChoice:
    delta = DeltaMessage(content=text) if continued else DeltaMessage(role="assistant", content=text)
    return ChatChunkChoice(index=index, delta=delta, finish_reason=finish_reason)


def _completion_chunk(index: int, text: str, finish_reason: str | None, continued: bool) -> CompletionChoice:
    return CompletionChoice(index=index, text=text, finish_reason=finish_reason)


def _prepend(first: StreamChunk, rest: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
    yield first
    yield from rest

