"""Images in chat and JSON-constrained output, end to end: the official `openai` client → API → Redis → a
worker per model (the tiny text model and the tiny vision-language model) → vLLM, and back."""

from __future__ import annotations

import base64
import io
import json

import jsonschema
import openai
import pytest
import requests
from PIL import Image, ImageDraw

from devtools.processes import private_stack
from maoocr.engines.demo_model import build_demo_model
from maoocr.engines.demo_vlm import build_demo_vlm, image_seq_len

pytest.importorskip("vllm")

MAX_IMAGES = 2
# Small and bounded, so even a random-weight model finishes it in a few tokens.
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["kind", "pages"],
          "properties": {"kind": {"enum": ["invoice", "letter", "form"]},
                         "pages": {"type": "integer", "minimum": 1, "maximum": 9}}}


@pytest.fixture(scope="module")
def mm_stack(tmp_path_factory):
    """Its own Redis, so no other test's worker takes these jobs."""
    work = tmp_path_factory.mktemp("mm-stack")
    vlm = {"model_path": str(build_demo_vlm(work / "tiny-vlm")), "model_type": "multimodal",
           "max_model_len": 1024, "max_num_seqs": 8, "max_images_per_prompt": MAX_IMAGES}
    with private_stack(work, str(build_demo_model(work / "tiny-model")), model={"max_num_seqs": 8},
                       extra_models={"vlm": vlm}) as stack:
        yield stack


def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


def scan(text: str, size: tuple[int, int] = (200, 80)) -> str:
    """A 'scanned' line of text as a PNG data: URL."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((10, size[1] // 2 - 6), text, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def ask(question: str, *image_urls: str) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": question}]}]


def test_openai_client_asks_about_a_scanned_invoice(mm_stack):
    question = "What is the invoice total?"
    answer = client(mm_stack).chat.completions.create(
        model="vlm", messages=ask(question, scan("Invoice 42 Total 9.99 EUR")), max_tokens=8, temperature=0,
        extra_body={"ignore_eos": True})
    assert answer.model == "vlm" and answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 8
    without_image = client(mm_stack).chat.completions.create(
        model="vlm", messages=ask(question), max_tokens=1, temperature=0)
    # The model saw the image: a 200x80 scan is 2 tiles + 1 global tile of image tokens in the prompt it ran.
    assert answer.usage.prompt_tokens - without_image.usage.prompt_tokens >= 3 * image_seq_len()


def test_different_images_give_different_answers(mm_stack):
    def answer(url: str, **extra) -> str:
        reply = client(mm_stack).chat.completions.create(
            model="vlm", messages=ask("What is written?", url), max_tokens=8, temperature=0,
            extra_body={"ignore_eos": True}, **extra)
        if extra.get("stream"):
            return "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
        return reply.choices[0].message.content

    hello, total = answer(scan("Hello 123")), answer(scan("Total 9.99 EUR"))
    assert hello != total  # same size, same prompt tokens: only the pixels differ
    assert answer(scan("Hello 123"), stream=True) == hello  # temperature 0: the difference is not noise


@pytest.mark.parametrize("model, content, expected", [
    ("tiny", [{"type": "image_url", "image_url": {"url": scan("x")}}], "is a text model"),
    ("vlm", [{"type": "image_url", "image_url": {"url": "https://example.com/scan.png"}}], "no network"),
    ("vlm", [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,"
                                                        + base64.b64encode(b"hello, not a picture").decode()}}],
     "not an image"),
    ("vlm", [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}], "base64"),
    ("vlm", [{"type": "image_url", "image_url": {"url": scan(str(i))}} for i in range(MAX_IMAGES + 1)],
     f"at most {MAX_IMAGES}"),
])
def test_bad_image_requests_are_400_before_any_job(mm_stack, model, content, expected):
    for stream in (False, True):
        response = requests.post(mm_stack.base_url + "/v1/chat/completions", timeout=60, json={
            "model": model, "stream": stream, "max_tokens": 4,
            "messages": [{"role": "user", "content": [*content, {"type": "text", "text": "Read it"}]}]})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and expected in error["message"]


def test_response_format_json_schema_gives_valid_json(mm_stack):
    reply = client(mm_stack).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Classify this document"}], max_tokens=64, n=3,
        temperature=1.0, seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "document", "schema": SCHEMA}})
    assert len(reply.choices) == 3
    for choice in reply.choices:
        assert choice.finish_reason == "stop"  # the grammar ended it, not max_tokens
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)


def test_image_with_json_schema_on_the_vlm(mm_stack):
    reply = client(mm_stack).chat.completions.create(
        model="vlm", messages=ask("Which kind of document is this, and how many pages?", scan("INVOICE")),
        max_tokens=64, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "document", "schema": SCHEMA}})
    jsonschema.validate(json.loads(reply.choices[0].message.content), SCHEMA)


@pytest.mark.parametrize("response_format, expected", [
    ({"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "integr"}}},
     "not a valid JSON Schema"),  # refused by the API
    ({"type": "json_schema", "json_schema": {"name": "no-schema"}}, "needs json_schema.schema"),
    # Valid JSON Schema that vLLM's grammar backend cannot enforce: refused by the worker, still a 400.
    ({"type": "json_schema", "json_schema": {"name": "odd", "schema": {"type": "integer", "multipleOf": 7}}},
     "not supported"),
])
def test_unusable_schema_is_400(mm_stack, response_format, expected):
    for stream in (False, True):
        response = requests.post(mm_stack.base_url + "/v1/chat/completions", timeout=120, json={
            "model": "tiny", "stream": stream, "max_tokens": 8, "response_format": response_format,
            "messages": [{"role": "user", "content": "Classify"}]})
        assert response.status_code == 400, response.text
        assert expected in response.json()["error"]["message"]


def test_response_format_maps_onto_json_schema():
    from maoocr.protocol.openai import ChatCompletionRequest, CompletionRequest

    def schema(request_cls, response_format, **body):
        return request_cls.model_validate({"response_format": response_format, **body}).to_params("m", 8).json_schema

    chat = {"messages": [{"role": "user", "content": "hi"}]}
    assert schema(ChatCompletionRequest, {"type": "json_object"}, **chat) == {"type": "object"}
    assert schema(ChatCompletionRequest, {"type": "text"}, **chat) is None
    assert schema(CompletionRequest, {"type": "json_schema", "json_schema": {"name": "d", "schema": SCHEMA}},
                  prompt="hi") == SCHEMA


def test_max_images_per_prompt_is_for_multimodal_models():
    from pydantic import ValidationError

    from maoocr.config import ModelConfig

    assert ModelConfig(model_type="multimodal").image_limit == 1
    assert ModelConfig(model_type="multimodal", max_images_per_prompt=4).image_limit == 4
    assert ModelConfig().image_limit == 0
    with pytest.raises(ValidationError, match="max_images_per_prompt is for model_type multimodal"):
        ModelConfig(model_type="text", max_images_per_prompt=2)
