"""`GET /openapi.json`: the HTTP API as an OpenAPI 3.1 document whose schemas are the pydantic wire models.

Every route of the app is described here; a test compares this table with the app's url_map, so a new endpoint
without a description fails it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.auth import OPEN_PATHS
from maoocr.protocol.api import GenerateRequest, GenerateResponse, JobAccepted
from maoocr.protocol.batches import Batch, BatchCreateRequest, BatchList, FileDeleted, FileObject
from maoocr.protocol.generation import GenerationResult, StreamChunk
from maoocr.protocol.jobs import JobRecord
from maoocr.protocol.ocr import DocumentResult, OCROptions
from maoocr.protocol.openai import (ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion,
                                    CompletionChunk, CompletionRequest, ErrorResponse, ModelList)
from maoocr.protocol.status import DocumentAccepted, Health, JobPending, Readiness
from maoocr.protocol.usage import UsageReport

bp = Blueprint("openapi", __name__)

SCHEMAS = "#/components/schemas/{model}"
BEARER = "bearerAuth"


class _Ref:
    """A model to be replaced by its `$ref` once all schemas are generated together."""

    def __init__(self, model: type[BaseModel], mode: str) -> None:
        self.key = (model, mode)


def _in(model: type[BaseModel]) -> _Ref:
    return _Ref(model, "validation")


def _out(model: type[BaseModel]) -> _Ref:
    return _Ref(model, "serialization")


def _json(schema: Any, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict:
    return _json(_out(ErrorResponse), description)


def _sse(data_schema: Any, description: str) -> dict:
    # OpenAPI cannot type the events of a stream; the frame is text, each `data:` line holds one JSON object.
    return {"description": description,
            "content": {"text/event-stream": {"schema": {"type": "string"}, "x-sse-data": data_schema}}}


_BAD = {"400": _error("Malformed JSON, a missing or invalid field, or a prompt beyond the context"),
        "404": _error("Unknown model (model_not_found)"),
        "500": _error("The engine failed the job (engine_error, engine_dead: the worker reloads it)"),
        "503": _error("Redis is unavailable"), "504": _error("A waiting request timed out")}
# A key over a quota (quotas in maoocr.yaml): the jobs that create work may answer this.
_QUOTA = {"429": _json(_out(ErrorResponse), "The API key is over its tokens_per_day or jobs_in_flight quota "
                                            "(quota_exceeded; the message names the limit)",
                       {"Retry-After": {"description": "seconds: to midnight UTC for the daily quota, a few for "
                                                       "jobs in flight", "schema": {"type": "integer"}}})}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_JOB_404 = {"404": _error("No such job, or it expired (job_not_found)")}
_FILE_ID = {"name": "file_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_FILE_404 = {"404": _error("No such file, or it expired or was deleted (file_not_found)")}
_BATCH_ID = {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_BATCH_404 = {"404": _error("No such batch, or it expired (batch_not_found)")}


def _generation_op(summary: str, body: type[BaseModel], full: type[BaseModel], chunk: type[BaseModel]) -> dict:
    return {"summary": summary, "tags": ["openai"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _in(body)}}},
            "responses": {"200": {"description": "The completion; with `stream: true` a stream of chunks ending "
                                                 "`data: [DONE]`",
                                  "content": {"application/json": {"schema": _out(full)},
                                              "text/event-stream": {"schema": {"type": "string"},
                                                                    "x-sse-data": _out(chunk)}}},
                          **_BAD, **_QUOTA}}


def _document_form() -> dict:
    options = OCROptions.model_json_schema()["properties"]
    return {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "PDF, PNG, JPEG, TIFF, BMP or WebP bytes"},
        "strategy": options["strategy"],
        "output": options["output"],
        "keep_headers": {"type": "boolean", "description": options["keep_headers"]["description"]},
        "languages": {"type": "string", "description": "comma-separated, e.g. 'en,zh' (informational)"},
        "pages": {"type": "string", "pattern": r"^\s*[0-9]+\s*(-\s*[0-9]+\s*)?$",
                  "description": "one page '3' or a range '2-5' (1-based, inclusive)"},
        "first_page": {"type": "integer", "minimum": 1},
        "last_page": {"type": "integer", "minimum": 1},
        "webhook_url": {"type": "string", "description": "POSTed the job's record, signed, when the job ends"},
    }}


def _paths() -> dict[str, dict[str, dict]]:
    ws_messages = {"client": {"oneOf": [
        {"type": "object", "required": ["job_id"],
         "properties": {"job_id": {"type": "string"}, "after": {"type": "integer"}}},
        _in(GenerateRequest), _in(ChatCompletionRequest)]},
        "server": {"oneOf": [_out(StreamChunk), _out(ErrorResponse)]}}
    return {
        "/healthz": {"get": {"summary": "Liveness: the process answers", "tags": ["health"],
                             "responses": {"200": _json(_out(Health), "Alive")}}},
        "/readyz": {"get": {
            "summary": "Readiness: Redis up, the default model's LLM worker and an OCR worker alive",
            "tags": ["health"],
            "parameters": [{"name": "model", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "ask for this model's LLM worker alone"}],
            "responses": {"200": _json(_out(Readiness), "Ready"),
                          "503": _json(_out(Readiness), "Redis down or a needed worker missing (see `missing`)"),
                          "404": _error("Unknown model (model_not_found)")}}},
        "/api/generate": {"post": {
            "summary": "Queue a generation job; with `wait: true` answer with its text", "tags": ["generation"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _in(GenerateRequest)}}},
            "responses": {"200": _json(_out(GenerateResponse), "The finished generation (`wait: true`)"),
                          "202": _json(_out(JobAccepted), "Queued", {"Location": {
                              "description": "the job's status URL", "schema": {"type": "string"}}}),
                          **_BAD, **_QUOTA}}},
        "/v1/chat/completions": {"post": _generation_op("OpenAI-compatible chat completion, through the queue",
                                                        ChatCompletionRequest, ChatCompletion, ChatCompletionChunk)},
        "/v1/completions": {"post": _generation_op("OpenAI-compatible text completion, through the queue",
                                                   CompletionRequest, Completion, CompletionChunk)},
        "/v1/models": {"get": {"summary": "Configured models, their context length and live workers",
                               "tags": ["openai"], "responses": {"200": _json(_out(ModelList), "The models"),
                                                                 "503": _error("Redis is unavailable")}}},
        **{path: {"post": {"summary": f"vLLM's {path}: not served (the API holds no tokenizer); a clear 404",
                           "tags": ["openai"], "responses": {"404": _error("Not served (not_found)")}}}
           for path in ("/tokenize", "/detokenize")},
        "/v1/jobs/{job_id}": {
            "get": {"summary": "A job's record", "tags": ["jobs"], "parameters": [_JOB_ID],
                    "responses": {"200": _json(_out(JobRecord), "The job record"), **_JOB_404}},
            "delete": {"summary": "Cancel a queued or running job (a finished one stays as it is)", "tags": ["jobs"],
                       "parameters": [_JOB_ID],
                       "responses": {"200": _json(_out(JobRecord), "The job record after the cancel"), **_JOB_404}}},
        "/v1/jobs/{job_id}/events": {"get": {
            "summary": "The job's chunks as server-sent events: replayed from the start (or after a seq), then live",
            "tags": ["jobs"],
            "parameters": [_JOB_ID,
                           {"name": "after", "in": "query", "required": False, "schema": {"type": "integer"},
                            "description": "replay only chunks with a higher seq"},
                           {"name": "Last-Event-ID", "in": "header", "required": False,
                            "schema": {"type": "integer"}, "description": "as `after`; wins over it"}],
            "responses": {"200": _sse(_out(StreamChunk), "Events `id: <seq>`, `event: token|progress|end`, "
                                                         "`data: <chunk>`; the stream ends after the `end` event"),
                          "400": _error("`after` / Last-Event-ID is not an integer"), **_JOB_404}}},
        "/v1/jobs/{job_id}/result": {"get": {
            "summary": "A finished job's result; OCR results in the asked format", "tags": ["jobs"],
            "parameters": [_JOB_ID, {"name": "format", "in": "query", "required": False,
                                     "schema": {"type": "string", "enum": ["json", "text", "markdown"],
                                                "default": "json"}}],
            "responses": {
                "200": {"description": "The result: an OCR document (json, text or markdown) or a generation",
                        "content": {"application/json": {"schema": {"oneOf": [_out(DocumentResult),
                                                                               _out(GenerationResult)]}},
                                    "text/plain": {"schema": {"type": "string"}},
                                    "text/markdown": {"schema": {"type": "string"}}}},
                "202": _json(_out(JobPending), "Not finished yet"),
                "400": _error("Unknown format"),
                "409": _json(_out(JobPending), "Ended without a result (failed or cancelled)"), **_JOB_404}}},
        "/v1/documents": {"post": {
            "summary": "Upload a document for OCR", "tags": ["documents"],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _document_form()}}},
            "responses": {"202": _json(_out(DocumentAccepted), "Queued"),
                          "400": _error("No `file` field, or invalid options"),
                          "413": _error("Larger than documents.max_bytes, or too many pages or pixels"),
                          "415": _error("Not a supported document format"),
                          "422": _error("A supported format that cannot be read (corrupt)"),
                          "503": _error("Redis is unavailable"), **_QUOTA}}},
        "/v1/files": {"post": {
            "summary": "Upload a Batch API input file: JSONL, one request per line", "tags": ["batches"],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file", "purpose"], "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": 'UTF-8 JSONL: {"custom_id", "method": "POST", "url", "body"} per line'},
                    "purpose": {"type": "string", "enum": ["batch"]}}}}}},
            "responses": {"200": _json(_out(FileObject), "The file object"),
                          "400": _error("Not purpose 'batch', no `file`, empty, not UTF-8 JSONL, or more lines "
                                        "than batches.max_lines"),
                          "413": _error("Larger than batches.max_file_bytes, or a line larger than "
                                        "batches.max_line_bytes"),
                          "503": _error("Redis is unavailable")}}},
        "/v1/files/{file_id}": {
            "get": {"summary": "A file object", "tags": ["batches"], "parameters": [_FILE_ID],
                    "responses": {"200": _json(_out(FileObject), "The file object"), **_FILE_404}},
            "delete": {"summary": "Delete a file (a batch keeps its own copy of its input, and its answers)",
                       "tags": ["batches"], "parameters": [_FILE_ID],
                       "responses": {"200": _json(_out(FileDeleted), "Deleted"), **_FILE_404}}},
        "/v1/files/{file_id}/content": {"get": {
            "summary": "A file's content: an input file's lines, or a batch's output or error lines in input order",
            "tags": ["batches"], "parameters": [_FILE_ID],
            "responses": {"200": {"description": "JSONL", "content": {"application/jsonl": {
                "schema": {"type": "string"}}}}, **_FILE_404}}},
        "/v1/batches": {
            "post": {"summary": "Run every request of an input file as a queued job at bulk priority",
                     "tags": ["batches"],
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": _in(BatchCreateRequest)}}},
                     "responses": {"200": _json(_out(Batch), "The batch, validating"),
                                   "400": _error("An unsupported endpoint or completion_window, a file that is not "
                                                 "purpose 'batch', or invalid metadata"),
                                   "404": _error("No such input file (file_not_found)")}},
            "get": {"summary": "The caller's batches, newest first", "tags": ["batches"],
                    "parameters": [{"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
                                    "description": "a batch id: list the batches after it (the next page)"},
                                   {"name": "limit", "in": "query", "required": False,
                                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}],
                    "responses": {"200": _json(_out(BatchList), "A page of batches"),
                                  "400": _error("A bad `limit`, or an `after` not in the list")}}},
        "/v1/batches/{batch_id}": {"get": {
            "summary": "A batch: its status, request counts and (once ended) output and error files",
            "tags": ["batches"], "parameters": [_BATCH_ID],
            "responses": {"200": _json(_out(Batch), "The batch"), **_BATCH_404}}},
        "/v1/batches/{batch_id}/cancel": {"post": {
            "summary": "Cancel a batch: cancelling until every line is accounted for, then cancelled",
            "tags": ["batches"], "parameters": [_BATCH_ID],
            "responses": {"200": _json(_out(Batch), "The batch, cancelling (or cancelled)"),
                          "409": _error("The batch has ended or is finalizing"), **_BATCH_404}}},
        "/ws/stream": {"get": {
            "summary": "WebSocket: follow a job (`{\"job_id\", \"after\"}`) or start a generation and follow it",
            "description": "Upgrade to a WebSocket, send one JSON message (`x-websocket-messages.client`), then "
                           "receive the job's chunks as JSON text frames (`x-websocket-messages.server`) until "
                           "the chunk with `finished: true`.",
            "tags": ["jobs"], "x-websocket-messages": ws_messages,
            "responses": {"101": {"description": "Switched to the WebSocket protocol"},
                          "400": _error("Not a WebSocket upgrade request")}}},
        "/v1/usage": {"get": {
            "summary": "Usage per API key, model and UTC day: tokens, requests, documents, pages",
            "description": "A key sees its own usage; an admin key (auth.admin_keys) every key's, or one key's with "
                           "`owner`. With auth off every caller sees everyone's.",
            "tags": ["usage"],
            "parameters": [{"name": name, "in": "query", "required": False, "schema": {"type": "string",
                                                                                       "format": "date"},
                            "description": text} for name, text in (
                ("start", "first day, YYYY-MM-DD (default: 29 days before `end`)"),
                ("end", "last day, included, YYYY-MM-DD (default: today, UTC)"))] + [
                {"name": "owner", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "admin keys: only this key id (or 'anonymous')"}],
            "responses": {"200": _json(_out(UsageReport), "The usage, per key"),
                          "400": _error("A date not written YYYY-MM-DD, start after end, or more than 366 days"),
                          "403": _error("A key that is not an admin key asked for another key's usage"),
                          "503": _error("Redis is unavailable")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics read from Redis: jobs, queues, workers", "tags": ["ops"],
                             "responses": {"200": {"description": "Prometheus text format", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}},
                                 "503": _error("Redis is unavailable")}}},
        "/openapi.json": {"get": {"summary": "This document", "tags": ["ops"], "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }


def _secure(paths: dict[str, dict[str, dict]]) -> None:
    for path, operations in paths.items():
        for operation in operations.values():
            if path in OPEN_PATHS:
                operation["security"] = []
            else:
                operation["responses"].setdefault("401", _error("API keys are configured and none, or a wrong "
                                                                "one, was sent"))


def build_document(version: str = "0.1.0") -> dict[str, Any]:
    paths = _paths()
    _secure(paths)
    refs: dict[tuple, _Ref] = {}

    def collect(node: Any) -> None:
        if isinstance(node, _Ref):
            refs.setdefault(node.key, node)
        elif isinstance(node, dict):
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(paths)
    mapping, definitions = models_json_schema(list(refs), ref_template=SCHEMAS)

    def resolve(node: Any) -> Any:
        if isinstance(node, _Ref):
            return mapping[node.key]
        if isinstance(node, dict):
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return {
        "openapi": "3.1.0",
        "info": {"title": "MaoOCR", "version": version,
                 "description": "Documents to text and LLM generation as queued jobs. Errors are "
                                "`{\"error\": {\"code\", \"message\"}}`."},
        "paths": resolve(paths),
        "components": {"schemas": definitions.get("$defs", {}),
                       "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer",
                                                    "description": "An API key from auth.api_keys / MAOOCR_API_KEYS; "
                                                                   "needed only when keys are configured"}}},
        "security": [{BEARER: []}],
    }


@bp.get("/openapi.json")
def openapi_json():
    document = current_app.extensions.get("maoocr.openapi")
    if document is None:
        from maoocr import __version__

        document = current_app.extensions["maoocr.openapi"] = build_document(__version__)
    return document
