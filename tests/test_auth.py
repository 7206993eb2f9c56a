"""API keys: a stack with two keys on a password-protected Redis. Without a key nothing but health answers;
each key sees its own jobs and gets 404 for the other's, on every way of reading a job.

One key is given plainly, the other only as its sha256 digest (as a config file should hold it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openai
import pytest
import redis
import requests
import websocket

from devtools import docgen
from devtools.processes import ROOT, private_stack
from maoocr.auth import ApiKeys, bearer_token, digest, is_loopback
from maoocr.config import load_settings
from maoocr.errors import ConfigError
from maoocr.store.keys import WORKER_KEY

KEY_A = "alpha-" + "a1" * 16
KEY_B = "beta-" + "b2" * 16
REDIS_PASSWORD = "s3cret-redis-pw"
CLI = [sys.executable, "-m", "maoocr.cli"]


# -- keys, without a server ---------------------------------------------------------------------------------------

def test_plain_and_hashed_keys_match_the_same_owner():
    keys = ApiKeys.parse([KEY_A, f"sha256:{digest(KEY_B).upper()}", " ", KEY_A])
    assert keys.enabled and len(keys.digests) == 2
    assert keys.owner_of(KEY_A) == digest(KEY_A)[:16]
    assert keys.owner_of(KEY_B) == digest(KEY_B)[:16]
    assert keys.owner_of(KEY_A + "x") is None and keys.owner_of("") is None
    assert not ApiKeys.parse([]).enabled


def test_bearer_header_parsing_and_loopback_hosts():
    assert bearer_token(f"Bearer {KEY_A}") == KEY_A and bearer_token(f"bearer  {KEY_A} ") == KEY_A
    assert bearer_token(f"Basic {KEY_A}") is None and bearer_token("Bearer ") is None and bearer_token(None) is None
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("10.1.2.3")


def test_keys_from_the_config_file_and_the_environment(tmp_path):
    (tmp_path / "models.yaml").write_text("models:\n  m:\n    model_path: null\n")
    config = tmp_path / "maoocr.yaml"
    config.write_text(f"models_file: {tmp_path / 'models.yaml'}\nauth:\n  api_keys:\n"
                      f"    - sha256:{digest(KEY_A)}\n")
    from_file = load_settings(config, env={}).auth.keys()
    assert from_file.owner_of(KEY_A) and not from_file.owner_of(KEY_B)
    # The environment replaces the file's list.
    from_env = load_settings(config, env={"MAOOCR_API_KEYS": f"{KEY_B}, sha256:{digest('other')}"}).auth.keys()
    assert from_env.owner_of(KEY_B) and from_env.owner_of("other") and not from_env.owner_of(KEY_A)


def test_a_malformed_key_list_fails_without_echoing_keys(tmp_path):
    (tmp_path / "models.yaml").write_text("models:\n  m:\n    model_path: null\n")
    config = tmp_path / "maoocr.yaml"
    config.write_text(f"models_file: {tmp_path / 'models.yaml'}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={"MAOOCR_API_KEYS": f"{KEY_A},sha256:1234"})
    assert "64 hex digits" in str(info.value) and KEY_A not in str(info.value)


# -- a secured stack ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory, tiny_model):
    with private_stack(tmp_path_factory.mktemp("auth-stack"), str(tiny_model), redis_password=REDIS_PASSWORD,
                       ocr_worker=True, env={"MAOOCR_API_KEYS": f"{KEY_A},sha256:{digest(KEY_B)}"}) as stack:
        yield stack


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ws_url(stack) -> str:
    return stack.base_url.replace("http", "ws") + "/ws/stream"


def generate(stack, key: str, **body) -> requests.Response:
    body = {"prompt": "a prompt from the auth test", "max_tokens": 6, "ignore_eos": True, "temperature": 0, **body}
    return requests.post(stack.base_url + "/api/generate", json=body, headers=auth(key), timeout=120)


def events(stack, key: str, job_id: str, **kwargs) -> requests.Response:
    return requests.get(f"{stack.base_url}/v1/jobs/{job_id}/events", headers={**auth(key), **kwargs.pop("headers", {})},
                        timeout=60, **kwargs)


def sse_chunks(reply: requests.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in reply.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def ws_messages(stack, key: str | None, message: dict) -> list[dict]:
    ws = websocket.create_connection(ws_url(stack), timeout=60, header=[f"Authorization: Bearer {key}"] if key else [])
    try:
        ws.send(json.dumps(message))
        got = [json.loads(ws.recv())]
        while "finished" in got[-1] and not got[-1]["finished"]:  # a refusal is one {"error": …} message
            got.append(json.loads(ws.recv()))
        return got
    finally:
        ws.close()


ENDPOINTS = [
    ("POST", "/api/generate", {"json": {"prompt": "x", "max_tokens": 2}}),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}}),
    ("POST", "/v1/completions", {"json": {"prompt": "x", "max_tokens": 2}}),
    ("GET", "/v1/models", {}),
    ("POST", "/v1/documents", {"files": {"file": ("a.png", b"\x89PNG\r\n\x1a\n")}}),
    ("GET", "/v1/jobs/0123456789abcdef", {}),
    ("GET", "/v1/jobs/0123456789abcdef/result", {}),
    ("GET", "/v1/jobs/0123456789abcdef/events", {}),
    ("DELETE", "/v1/jobs/0123456789abcdef", {}),
]


def test_no_key_or_a_wrong_key_is_401_everywhere_but_health(secured):
    for method, path, kwargs in ENDPOINTS:
        missing = requests.request(method, secured.base_url + path, timeout=30, **kwargs)
        assert missing.status_code == 401, (path, missing.text)
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="maoocr"'
        assert missing.json()["error"]["code"] == "missing_api_key" and "Bearer" in missing.json()["error"]["message"]
        wrong = requests.request(method, secured.base_url + path, headers=auth(KEY_A[:-1]), timeout=30, **kwargs)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key", (path, wrong.text)
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        basic = requests.request(method, secured.base_url + path, auth=("user", KEY_A), timeout=30, **kwargs)
        assert basic.status_code == 401, path
    for key in (None, KEY_A[:-1]):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            ws_messages(secured, key, {"prompt": "x", "max_tokens": 2})
        assert refused.value.status_code == 401
    assert requests.get(secured.base_url + "/healthz", timeout=10).status_code == 200
    ready = requests.get(secured.base_url + "/readyz", timeout=10)
    assert ready.status_code == 200 and len(ready.json()["workers"]) == 2


def test_each_key_sees_only_its_own_jobs(secured):
    done = generate(secured, KEY_A, wait=True)
    assert done.status_code == 200, done.text
    job_id = done.json()["job_id"]
    base = f"{secured.base_url}/v1/jobs/{job_id}"

    record = requests.get(base, headers=auth(KEY_A), timeout=30)
    assert record.status_code == 200 and record.json()["owner"] == digest(KEY_A)[:16]
    assert KEY_A not in record.text  # the owner names the key without giving it away
    assert requests.get(base + "/result", headers=auth(KEY_A), timeout=30).json()["usage"]["completion_tokens"] == 6
    full = sse_chunks(events(secured, KEY_A, job_id))
    assert full[-1]["finished"] and [c["seq"] for c in full] == list(range(len(full)))
    assert sse_chunks(events(secured, KEY_A, job_id, params={"after": 0})) == full[1:]
    assert sse_chunks(events(secured, KEY_A, job_id, headers={"Last-Event-ID": "1"})) == full[2:]
    assert ws_messages(secured, KEY_A, {"job_id": job_id}) == full
    assert ws_messages(secured, KEY_A, {"job_id": job_id, "after": 0}) == full[1:]

    # Key B: the job does not exist, exactly as a job that never existed.
    nobody = requests.get(f"{secured.base_url}/v1/jobs/{'f' * 32}", headers=auth(KEY_B), timeout=30)
    assert nobody.status_code == 404
    for reply in (requests.get(base, headers=auth(KEY_B), timeout=30),
                  requests.get(base + "/result", headers=auth(KEY_B), timeout=30),
                  events(secured, KEY_B, job_id), events(secured, KEY_B, job_id, params={"after": 0}),
                  events(secured, KEY_B, job_id, headers={"Last-Event-ID": "1"}),
                  requests.delete(base, headers=auth(KEY_B), timeout=30)):
        assert reply.status_code == 404, reply.text
        assert reply.json() == json.loads(nobody.text.replace("f" * 32, job_id))
    for message in ({"job_id": job_id}, {"job_id": job_id, "after": 0}):
        assert ws_messages(secured, KEY_B, message) == [{"error": {
            "code": "job_not_found", "message": f"job {job_id!r} not found (it may have expired)"}}]
    assert requests.get(base, headers=auth(KEY_A), timeout=30).json()["status"] == "succeeded"


def test_another_key_cannot_cancel_a_running_job_but_its_owner_can(secured):
    long = {"max_tokens": 900, "wait": False}
    job_b = generate(secured, KEY_B, **long).json()["job_id"]
    assert requests.delete(f"{secured.base_url}/v1/jobs/{job_b}", headers=auth(KEY_A), timeout=30).status_code == 404
    job_a = generate(secured, KEY_A, **long).json()["job_id"]
    # Cancel once job A streams (a fixed sleep raced a fast engine: the job could end first).
    with events(secured, KEY_A, job_a, stream=True) as live:
        next(line for line in live.iter_lines(decode_unicode=True) if line.startswith("data: "))
    cancelled = requests.delete(f"{secured.base_url}/v1/jobs/{job_a}", headers=auth(KEY_A), timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # The cancel travels over the password-protected pub/sub channel to the worker, which aborts the request.
    assert sse_chunks(events(secured, KEY_A, job_a))[-1]["finish_reason"] == "cancelled"
    b_end = sse_chunks(events(secured, KEY_B, job_b))[-1]
    assert b_end["finish_reason"] == "length" and b_end["usage"]["completion_tokens"] == 900


def test_jobs_started_over_a_websocket_belong_to_its_key(secured):
    chunks = ws_messages(secured, KEY_B, {"prompt": "socket", "max_tokens": 5, "ignore_eos": True})
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    job_id = chunks[0]["job_id"]
    assert requests.get(f"{secured.base_url}/v1/jobs/{job_id}", headers=auth(KEY_A), timeout=30).status_code == 404
    assert requests.get(f"{secured.base_url}/v1/jobs/{job_id}", headers=auth(KEY_B), timeout=30).status_code == 200


def test_openai_client_api_key_is_the_bearer_key(secured):
    good = openai.OpenAI(base_url=secured.base_url + "/v1", api_key=KEY_B, max_retries=0, timeout=120)
    reply = good.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=4,
                                         extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 4
    assert [m.id for m in good.models.list().data] == ["tiny"]
    streamed = list(good.completions.create(model="tiny", prompt="x", max_tokens=3, stream=True,
                                            extra_body={"ignore_eos": True}))
    assert streamed[-1].choices[0].finish_reason == "length"
    bad = openai.OpenAI(base_url=secured.base_url + "/v1", api_key="not-a-key", max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model="tiny", prompt="x", max_tokens=2)


def test_documents_and_the_command_line_tools_use_the_key(secured, tmp_path):
    page = docgen.numbered_pages(1)[0]
    path = tmp_path / "page.png"
    page.image.save(path)
    env = {k: v for k, v in os.environ.items() if k != "MAOOCR_API_KEY"}
    api = ["--api", secured.base_url]

    def cli(*args: str, key: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**env, **({"MAOOCR_API_KEY": key} if key else {})})

    denied = cli("submit", str(path), *api)
    assert denied.returncode == 1 and "401" in denied.stderr and "missing_api_key" in denied.stderr
    waited = cli("submit", str(path), "--wait", *api, "--api-key", KEY_A)
    assert waited.returncode == 0 and "page one" in waited.stdout, waited.stderr
    job_id = cli("submit", str(path), *api, key=KEY_A).stdout.strip()  # MAOOCR_API_KEY works too
    streamed = cli("stream", job_id, *api, key=KEY_A)
    assert json.loads(streamed.stdout.splitlines()[-1])["finished"], streamed.stderr
    assert json.loads(cli("status", job_id, *api, "--api-key", KEY_A).stdout)["status"] == "succeeded"
    other = cli("status", job_id, *api, "--api-key", KEY_B)
    assert other.returncode == 1 and "job_not_found" in other.stderr
    other_result = requests.get(f"{secured.base_url}/v1/jobs/{job_id}/result", headers=auth(KEY_B), timeout=30)
    assert other_result.status_code == 404

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "one.png").write_bytes(path.read_bytes())
    ingest = [*CLI, "ingest", str(folder), "--no-progress", "--api", secured.base_url]
    refused = subprocess.run([*ingest, "--out", str(tmp_path / "bad.jsonl"), "--api-key", "wrong"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    line = json.loads((tmp_path / "bad.jsonl").read_text())
    assert refused.returncode == 1 and line["status"] == "error" and line["error"]["code"] == "unauthorized"
    accepted = subprocess.run([*ingest, "--out", str(tmp_path / "ok.jsonl"), "--api-key", KEY_B],
                              capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    line = json.loads((tmp_path / "ok.jsonl").read_text())
    assert accepted.returncode == 0 and line["status"] == "succeeded", accepted.stderr
    assert requests.get(f"{secured.base_url}/v1/jobs/{line['job_id']}", headers=auth(KEY_A),
                        timeout=30).status_code == 404


def test_redis_needs_its_password_and_every_process_has_it(secured):
    bare = secured.redis_url.replace(f":{REDIS_PASSWORD}@", "")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(bare).ping()
    # The workers reach it for heartbeats; the tests above show the broker, the result backend (OCR chords),
    # the job store, the streams and the cancel channel all working through the same password URL.
    client = redis.Redis.from_url(secured.redis_url, decode_responses=True)
    assert sorted(json.loads(client.get(k))["kind"] for k in client.keys(WORKER_KEY.format("*"))) == ["llm", "ocr"]
