"""`/openapi.json`: a valid OpenAPI 3.1 document that describes every route of the app, and whose schemas
describe what the running API really answers (checked on real responses, not only on paper)."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

from api.app import create_app
from devtools import docgen

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def document(stack) -> dict:
    reply = requests.get(stack.base_url + "/openapi.json", timeout=10)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("application/json")
    return reply.json()


def flask_to_openapi(rule: str) -> str:
    return rule.replace("<", "{").replace(">", "}")


def test_document_validates_as_openapi_31(document):
    validate(document)  # raises with the offending path when invalid
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]
        ["bearerAuth"]["description"]}
    assert document["security"] == [{"bearerAuth": []}]
    # probes and the description itself are open (api.auth.OPEN_PATHS); everything else may answer 401
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert "401" in document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]


def test_every_route_of_the_app_is_documented_and_nothing_else(document, stack_settings):
    app = create_app(stack_settings)
    routes = {(flask_to_openapi(rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - IGNORED_METHODS}
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert routes == documented, {"undocumented": routes - documented, "not routes": documented - routes}
    # Path parameters are declared for every templated path.
    for path, operations in document["paths"].items():
        for operation in operations.values():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path


def test_upload_is_described_as_multipart_with_a_required_file(document):
    body = document["paths"]["/v1/documents"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] and schema["required"] == ["file"]
    assert schema["properties"]["file"] == {**schema["properties"]["file"], "type": "string", "format": "binary"}
    assert schema["properties"]["strategy"]["enum"] == ["auto", "fast", "accurate", "vlm"]
    events = document["paths"]["/v1/jobs/{job_id}/events"]["get"]
    assert {p["name"]: p["in"] for p in events["parameters"]} == {"job_id": "path", "after": "query",
                                                                   "Last-Event-ID": "header"}
    assert "text/event-stream" in events["responses"]["200"]["content"]


class Checker:
    """Validates a real response against the documented schema for its path, method, status and media type."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.checked: set[tuple[str, str, str]] = set()

    def schema(self, path: str, method: str, status: int, media: str) -> dict:
        responses = self.document["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method.upper()} {path} answered {status}, not documented"
        content = responses[str(status)].get("content", {})
        assert media in content, f"{method.upper()} {path} {status}: {media} not documented ({list(content)})"
        self.checked.add((path, method, str(status)))
        return content[media]

    def validate(self, instance, schema: dict) -> None:
        # The document is the root, so "#/components/schemas/…" references resolve inside it.
        jsonschema.Draft202012Validator({**schema, "components": self.document["components"]}).validate(instance)

    def response(self, reply: requests.Response, path: str) -> None:
        method = reply.request.method.lower()
        media = reply.headers.get("Content-Type", "").split(";")[0]
        documented = self.schema(path, method, reply.status_code, media)
        if media == "application/json":
            self.validate(reply.json(), documented["schema"])
        elif media == "text/event-stream":
            for line in reply.text.splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    self.validate(json.loads(line[len("data: "):]), documented["x-sse-data"])


def test_real_responses_match_the_documented_schemas(document, stack):
    check = Checker(document)
    url = stack.base_url

    def call(method: str, path: str, template: str | None = None, **kwargs) -> requests.Response:
        reply = requests.request(method, url + path, timeout=120, **kwargs)
        check.response(reply, template or path)
        return reply

    call("GET", "/healthz")
    call("GET", "/readyz")
    call("GET", "/v1/models")
    call("GET", "/openapi.json")
    call("GET", "/metrics")
    call("GET", "/ws/stream")  # a plain GET, not a WebSocket upgrade: 400
    done = call("POST", "/api/generate",
                json={"prompt": "say hello to the world", "max_tokens": 4, "wait": True}).json()
    job = f"/v1/jobs/{done['job_id']}"
    call("GET", job, "/v1/jobs/{job_id}")
    call("GET", job + "/result", "/v1/jobs/{job_id}/result")
    call("GET", job + "/events", "/v1/jobs/{job_id}/events")
    call("GET", job + "/events?after=zz", "/v1/jobs/{job_id}/events")
    call("DELETE", job, "/v1/jobs/{job_id}")  # finished: stays as it is, 200 with the record
    call("GET", "/v1/jobs/nope", "/v1/jobs/{job_id}")
    call("POST", "/api/generate", json={"prompt": "say hello to the world", "max_tokens": 4})
    call("POST", "/api/generate", json={"prompt": "say hello to the world", "bogus": 1})
    call("POST", "/api/generate", json={"prompt": "say hello to the world", "model": "no-such-model"})
    chat = {"messages": [{"role": "user", "content": "say hello to the world"}], "max_tokens": 4}
    call("POST", "/v1/chat/completions", json=chat)
    call("POST", "/v1/chat/completions", json={**chat, "stream": True})
    call("POST", "/v1/completions", json={"prompt": "say hello to the world", "max_tokens": 4})
    call("POST", "/v1/completions", json={"prompt": "say hello to the world", "max_tokens": 4, "stream": True})

    queued = call("POST", "/api/generate",
                  json={"prompt": "write a long story about the sea", "max_tokens": 600, "ignore_eos": True}).json()
    cancelled = f"/v1/jobs/{queued['job_id']}"
    call("DELETE", cancelled, "/v1/jobs/{job_id}")
    pending = requests.get(url + cancelled + "/result", timeout=10)
    check.response(pending, "/v1/jobs/{job_id}/result")
    assert pending.status_code in (202, 409)

    call("POST", "/v1/documents", data={"strategy": "fast"})  # no file: 400
    call("POST", "/v1/documents", files={"file": ("x.bin", b"\x00not a document at all" * 4)})  # 415
    accepted = call("POST", "/v1/documents", files={"file": ("p.png", docgen.encode(docgen.english_page().image,
                                                                                       "PNG"))},
                    data={"strategy": "fast", "pages": "1"}).json()
    result = f"/v1/jobs/{accepted['job_id']}/result"
    for _ in range(600):
        reply = requests.get(url + result, timeout=10)
        check.response(reply, "/v1/jobs/{job_id}/result")
        if reply.status_code != 202:
            break
        time.sleep(0.3)
    assert reply.status_code == 200
    call("GET", result + "?format=text", "/v1/jobs/{job_id}/result")
    call("GET", result + "?format=markdown", "/v1/jobs/{job_id}/result")
    call("GET", result + "?format=pdf", "/v1/jobs/{job_id}/result")

    expected = {("/api/generate", "post", s) for s in ("200", "202", "400", "404")} | {
        ("/v1/documents", "post", s) for s in ("202", "400", "415")} | {
        ("/v1/jobs/{job_id}/result", "get", s) for s in ("200", "400")} | {("/ws/stream", "get", "400")}
    assert expected <= check.checked, expected - check.checked
