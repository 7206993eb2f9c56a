"""LoRA adapters per request: `model: "<base>:<adapter>"` on every API runs the adapter on the base model's resident
engine, batched with the base model's requests; unknown adapters are a 404 naming them; an adapter that cannot be
loaded fails its jobs with the reason and leaves the engine serving everything else."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import websocket

from devtools.lora import build_broken_adapter, build_demo_adapter
from devtools.processes import private_stack, wait_for_job

PROMPT = "Write about the queue and the worker"


@pytest.fixture(scope="module")
def lora_stack(tmp_path_factory, tiny_model):
    work = tmp_path_factory.mktemp("lora")
    adapters = {"style": str(build_demo_adapter(tiny_model, work / "style", seed=1)),
                "other": str(build_demo_adapter(tiny_model, work / "other", seed=2)),
                "broken": str(build_broken_adapter(work / "broken")),
                "missing": str(work / "not-there")}
    with private_stack(work, str(tiny_model), model={"lora_adapters": adapters, "max_loras": 2}) as stack:
        yield stack


def complete(stack, model: str, **extra) -> requests.Response:
    return requests.post(f"{stack.base_url}/v1/completions", timeout=120, json={
        "model": model, "prompt": PROMPT, "max_tokens": 24, "temperature": 0, **extra})


def test_models_lists_each_adapter_under_its_base(lora_stack):
    cards = {card["id"]: card for card in requests.get(f"{lora_stack.base_url}/v1/models", timeout=10).json()["data"]}
    assert set(cards) == {"tiny", "tiny:style", "tiny:other", "tiny:broken", "tiny:missing"}
    assert cards["tiny"]["parent"] is None and cards["tiny:style"]["parent"] == "tiny"
    assert cards["tiny:style"]["workers"] == cards["tiny"]["workers"] == 1


def test_an_adapter_changes_greedy_output_and_batches_with_the_base_model(lora_stack):
    alone = complete(lora_stack, "tiny").json()["choices"][0]["text"]
    models = ["tiny", "tiny:style", "tiny:other"] * 4
    with ThreadPoolExecutor(len(models)) as pool:  # all at once: one engine, mixed in its batches
        replies = list(pool.map(lambda model: complete(lora_stack, model), models))
    assert all(reply.status_code == 200 for reply in replies), [r.text for r in replies]
    texts: dict[str, set[str]] = {}
    for model, reply in zip(models, replies):
        assert reply.json()["model"] == model
        texts.setdefault(model, set()).add(reply.json()["choices"][0]["text"])
    assert all(len(seen) == 1 for seen in texts.values()), texts  # greedy: the same answer every time
    base, style, other = (texts[m].pop() for m in ("tiny", "tiny:style", "tiny:other"))
    assert style != base and other != base and style != other
    assert base == alone  # in a step shared with adapter requests, the base model's rows are the base model's


def test_every_api_takes_an_adapter(lora_stack):
    chat = requests.post(f"{lora_stack.base_url}/v1/chat/completions", timeout=120, json={
        "model": "tiny:style", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8,
        "temperature": 0})
    assert chat.status_code == 200 and chat.json()["model"] == "tiny:style", chat.text
    job = requests.post(f"{lora_stack.base_url}/api/generate", timeout=30, json={
        "model": "tiny:other", "prompt": PROMPT, "max_tokens": 8, "temperature": 0}).json()["job_id"]
    record = wait_for_job(lora_stack, job)
    assert record["status"] == "succeeded" and record["model"] == "tiny:other", record
    ws = websocket.create_connection(lora_stack.base_url.replace("http", "ws") + "/ws/stream", timeout=60)
    ws.send(json.dumps({"model": "tiny:style", "prompt": PROMPT, "max_tokens": 24, "temperature": 0}))
    chunks = [json.loads(ws.recv())]
    while not chunks[-1]["finished"]:
        chunks.append(json.loads(ws.recv()))
    ws.close()
    streamed = "".join(chunk["delta"] for chunk in chunks)
    assert streamed == complete(lora_stack, "tiny:style").json()["choices"][0]["text"]


@pytest.mark.parametrize("model,named", [("tiny:nope", "'nope'"), ("nothere:style", "'nothere'")])
def test_an_unknown_adapter_or_model_is_a_404_naming_it(lora_stack, model, named):
    for reply in (complete(lora_stack, model),
                  requests.post(f"{lora_stack.base_url}/api/generate", json={"model": model, "prompt": "x"},
                                timeout=30)):
        assert reply.status_code == 404, reply.text
        assert named in reply.json()["error"]["message"], reply.text


@pytest.mark.parametrize("adapter,reason", [("broken", "cannot be loaded"), ("missing", "is not a folder")])
def test_an_adapter_that_cannot_load_fails_its_jobs_with_the_reason(lora_stack, adapter, reason):
    job = requests.post(f"{lora_stack.base_url}/api/generate", timeout=30, json={
        "model": f"tiny:{adapter}", "prompt": PROMPT, "max_tokens": 8}).json()["job_id"]
    record = wait_for_job(lora_stack, job)
    assert record["status"] == "failed" and reason in record["error"]["message"], record
    assert f"'{adapter}'" in record["error"]["message"]
    assert complete(lora_stack, "tiny:style").status_code == 200  # the engine serves on
