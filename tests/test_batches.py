"""The OpenAI Batch API through the official `openai` client: a JSONL file in, every line run as a queued job, and
exactly one answer per line across the output and error files — with bad lines, a cancel, an expired window, and
the worker, the API processes and Redis all killed mid-batch."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from pathlib import Path

import openai
import pytest
import redis
import requests

from api.app import create_app
from bench.reliability import Services, mid_stream
from devtools.processes import Proc, start_api, start_redis, wait_http, wait_until
from maoocr.batches.store import line_job_id
from maoocr.config import AuthSettings, BatchSettings
from maoocr.embedded import free_port
from maoocr.store.keys import BATCHES_ACTIVE_KEY, BATCHES_DUE_KEY, JOB_KEY

ENDED = ("completed", "failed", "expired", "cancelled")
KEY_A = "alpha-" + "a1" * 16
KEY_B = "beta-" + "b2" * 16


def chat(custom_id: str, max_tokens: int = 5, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": f"Question {custom_id}"}], "max_tokens": max_tokens,
                     "ignore_eos": True, **body}}


def completion(custom_id: str, max_tokens: int = 5, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions",
            "body": {"prompt": f"Once upon a time {custom_id}", "max_tokens": max_tokens, "ignore_eos": True, **body}}


def jsonl(lines: list[dict | str]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def upload(client: openai.OpenAI, tmp_path: Path, lines: list[dict | str], name: str = "requests.jsonl"):
    path = tmp_path / name
    path.write_bytes(jsonl(lines))
    with path.open("rb") as f:
        return client.files.create(file=f, purpose="batch")


def run_batch(client: openai.OpenAI, tmp_path: Path, lines: list, endpoint: str = "/v1/chat/completions",
              window: str = "24h", name: str = "requests.jsonl"):
    input_file = upload(client, tmp_path, lines, name)
    return client.batches.create(input_file_id=input_file.id, endpoint=endpoint, completion_window=window,
                                 metadata={"story": name})


def wait_batch(client: openai.OpenAI, batch_id: str, until=ENDED, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in until:
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.3)


def answers(client: openai.OpenAI, batch) -> tuple[list[dict], list[dict]]:
    """The output and error files' lines (none for a file the batch does not have)."""
    def lines(file_id: str | None) -> list[dict]:
        if file_id is None:
            return []
        text = client.files.content(file_id).text
        assert client.files.retrieve(file_id).bytes == len(text.encode())
        return [json.loads(line) for line in text.splitlines()]

    return lines(batch.output_file_id), lines(batch.error_file_id)


def assert_each_line_answered_once(batch, lines: list, output: list[dict], errors: list[dict]) -> None:
    """One answer per input line across both files; the counts say the same."""
    got = [a["id"].rsplit("_", 1)[1] for a in output + errors]
    assert sorted(got, key=int) == [str(i) for i in range(len(lines))], got
    wanted = Counter(line.get("custom_id") if isinstance(line, dict) else None for line in lines)
    assert Counter(a["custom_id"] for a in output + errors) == wanted
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (len(lines), len(output), len(errors))
    assert all(a["error"] is None and a["response"]["status_code"] == 200 for a in output)
    assert all(a["error"]["code"] for a in errors)


@pytest.fixture
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused", max_retries=0)


def test_the_openai_client_runs_batches_of_both_endpoints_with_bad_lines_failing_alone(
        stack, stack_settings, client, tmp_path):
    # c3 asks to run later than bulk work (granted), c4 to run first (it runs at bulk priority all the same).
    priorities = {"c3": 9, "c4": 0}
    chat_lines = [chat(f"c{i}", seed=i, priority=priorities.get(f"c{i}")) for i in range(1, 5)] + [
        "this line is not JSON",
        chat("c1"),  # the same custom_id again
        chat("unknown-model", model="no-such-model"),
        chat("too-long", max_tokens=100_000),
        chat("streaming", stream=True),
        {**chat("wrong-url"), "url": "/v1/completions"},
    ]
    completion_lines = [completion(f"p{i}") for i in range(1, 4)] + [completion("two-prompts", prompt=["a", "b"])]
    chat_batch = run_batch(client, tmp_path, chat_lines, name="chat.jsonl")
    completion_batch = run_batch(client, tmp_path, completion_lines, "/v1/completions", name="completions.jsonl")
    assert chat_batch.status == "validating" and chat_batch.request_counts.total == len(chat_lines)
    assert chat_batch.metadata == {"story": "chat.jsonl"} and chat_batch.expires_at - chat_batch.created_at == 86400

    chat_batch = wait_batch(client, chat_batch.id)
    assert chat_batch.status == "completed", chat_batch
    assert chat_batch.in_progress_at and chat_batch.finalizing_at and chat_batch.completed_at
    output, errors = answers(client, chat_batch)
    assert_each_line_answered_once(chat_batch, chat_lines, output, errors)
    assert [a["custom_id"] for a in output] == ["c1", "c2", "c3", "c4"]  # in input order
    assert [(a["custom_id"], a["error"]["code"]) for a in errors] == [
        (None, "invalid_json"), ("c1", "duplicate_custom_id"), ("unknown-model", "model_not_found"),
        ("too-long", "context_length_exceeded"), ("streaming", "invalid_request"), ("wrong-url", "invalid_url")]
    # A body the endpoint refuses carries the endpoint's own answer.
    assert errors[2]["response"]["status_code"] == 404
    assert errors[2]["response"]["body"]["error"]["code"] == "model_not_found"

    # Each body is what the endpoint itself answers, and the line's job ran at bulk priority.
    sync = requests.post(stack.base_url + "/v1/chat/completions", timeout=120, json=chat_lines[0]["body"]).json()
    for answer in output:
        body = answer["response"]["body"]
        assert body.keys() == sync.keys() and body["choices"][0].keys() == sync["choices"][0].keys()
        assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] == 5
        assert body["id"] == "chatcmpl-" + answer["response"]["request_id"]
        openai.types.chat.ChatCompletion.model_validate(body)
        job = requests.get(f"{stack.base_url}/v1/jobs/{answer['response']['request_id']}", timeout=10).json()
        wanted = 9 if answer["custom_id"] == "c3" else stack_settings.priorities.bulk
        assert (job["batch_id"], job["priority"]) == (chat_batch.id, wanted)

    completion_batch = wait_batch(client, completion_batch.id)
    output, errors = answers(client, completion_batch)
    assert_each_line_answered_once(completion_batch, completion_lines, output, errors)
    assert [a["custom_id"] for a in errors] == ["two-prompts"]
    for answer in output:
        body = answer["response"]["body"]
        openai.types.Completion.model_validate(body)
        assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 5

    # Listed newest first, page by page as the client follows `after`.
    listed = [b.id for b in client.batches.list(limit=100).data]
    assert listed.index(completion_batch.id) < listed.index(chat_batch.id)
    assert [b.id for b in client.batches.list(limit=1)] == listed
    # The input file is kept as uploaded, and can be deleted; the batch keeps its answers.
    assert client.files.content(chat_batch.input_file_id).content == jsonl(chat_lines)
    assert client.files.delete(chat_batch.input_file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(chat_batch.input_file_id)
    assert len(answers(client, client.batches.retrieve(chat_batch.id))[0]) == 4


def test_cancel_stops_the_unfinished_lines(client, tmp_path, redis_client):
    lines = [chat(f"long-{i}", max_tokens=900) for i in range(10)]
    batch = run_batch(client, tmp_path, lines)
    wait_until(lambda: redis_client.hget(JOB_KEY.format(line_job_id(batch.id, 0)), "status") == "running", [], 120)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at

    batch = wait_batch(client, batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at
    output, errors = answers(client, batch)
    assert_each_line_answered_once(batch, lines, output, errors)
    assert errors and {a["error"]["code"] for a in errors} == {"batch_cancelled"}
    stopped = [a["custom_id"] for a in errors]
    assert all(redis_client.hget(JOB_KEY.format(line_job_id(batch.id, int(c.split("-")[1]))), "status")
               in ("cancelled", None) for c in stopped)
    assert client.batches.cancel(batch.id).status == "cancelled"  # cancelling again changes nothing


def test_a_batch_past_its_completion_window_expires(client, tmp_path):
    lines = [chat(f"slow-{i}", max_tokens=900) for i in range(6)]
    batch = run_batch(client, tmp_path, lines, window="2s")
    batch = wait_batch(client, batch.id, timeout_s=120)
    assert batch.status == "expired" and batch.expired_at >= batch.expires_at
    output, errors = answers(client, batch)
    assert_each_line_answered_once(batch, lines, output, errors)
    assert errors and {a["error"]["code"] for a in errors} == {"batch_expired"}

    input_file = upload(client, tmp_path, lines[:1])
    for window in ("0h", "1d", "24 h", "169h"):
        with pytest.raises(openai.BadRequestError, match="completion_window"):
            client.batches.create(input_file_id=input_file.id, endpoint="/v1/chat/completions",
                                  completion_window=window)
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=input_file.id, endpoint="/v1/embeddings", completion_window="24h")


def test_a_line_whose_job_record_vanished_is_queued_again(client, tmp_path, redis_client):
    lines = [chat("kept", seed=1), chat("vanishing", max_tokens=600, seed=2)]
    batch = run_batch(client, tmp_path, lines)
    vanishing = JOB_KEY.format(line_job_id(batch.id, 1))
    wait_until(lambda: redis_client.hget(vanishing, "status") == "running", [], 120)
    redis_client.delete(vanishing)  # as if it had expired (ttls.job_s) before it ended

    batch = wait_batch(client, batch.id)
    output, errors = answers(client, batch)
    assert_each_line_answered_once(batch, lines, output, errors)
    assert batch.status == "completed" and [a["custom_id"] for a in output] == ["kept", "vanishing"]
    assert output[1]["response"]["body"]["usage"]["completion_tokens"] == 600


# -- limits and owners, on an app of this test's own settings (the session's Redis, API keys on) ------------------

@pytest.fixture
def strict_app(stack_settings):
    settings = stack_settings.model_copy(update={
        "batches": BatchSettings(max_lines=3, max_file_bytes=2000, max_line_bytes=600),
        "auth": AuthSettings(api_keys=[KEY_A, KEY_B])})
    app = create_app(settings)
    yield app
    app.extensions["maoocr.batches"].stop()


def post_file(http, content: bytes, key: str = KEY_A, purpose: str = "batch"):
    return http.post("/v1/files", headers={"Authorization": f"Bearer {key}"},
                     data={"purpose": purpose, "file": (io.BytesIO(content), "in.jsonl")})


def test_limits_and_malformed_files_are_refused_with_a_reason(strict_app):
    http = strict_app.test_client()
    refused = {
        "too many lines": (jsonl([chat(f"r{i}") for i in range(4)]), "batch", 400, "batches.max_lines"),
        "too big a file": (jsonl([chat("big", stop=["x" * 450])] * 4), "batch", 413, "batches.max_file_bytes"),
        "too big a line": (jsonl([chat("ok"), chat("big", stop=["x" * 600])]), "batch", 413, "line 2 is"),
        "empty": (b"\n \n", "batch", 400, "empty"),
        "not JSONL": (b"name,age\nann,3\n", "batch", 400, "JSONL"),
        "not UTF-8": (b"\xff\xfe{}\n", "batch", 400, "UTF-8"),
        "wrong purpose": (jsonl([chat("r")]), "fine-tune", 400, "purpose"),
    }
    for story, (content, purpose, status, words) in refused.items():
        reply = post_file(http, content, purpose=purpose)
        assert reply.status_code == status and words in reply.json["error"]["message"], (story, reply.json)
    assert post_file(http, jsonl([chat(f"r{i}") for i in range(3)])).status_code == 200


def test_files_and_batches_belong_to_the_key_that_made_them(strict_app):
    http = strict_app.test_client()
    a, b = ({"Authorization": f"Bearer {key}"} for key in (KEY_A, KEY_B))
    file_id = post_file(http, jsonl([chat("mine", model="no-such-model")])).json["id"]
    for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
        assert http.get(path, headers=b).status_code == 404
        assert http.get(path, headers=a).status_code == 200
    assert http.get(f"/v1/files/{file_id}").status_code == 401
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    assert http.post("/v1/batches", json=body, headers=b).status_code == 404
    batch = http.post("/v1/batches", json=body, headers=a).json
    for reply in (http.get(f"/v1/batches/{batch['id']}", headers=b),
                  http.post(f"/v1/batches/{batch['id']}/cancel", headers=b),
                  http.delete(f"/v1/files/{file_id}", headers=b)):
        assert reply.status_code == 404 and reply.json["error"]["code"] in ("batch_not_found", "file_not_found")
    assert batch["id"] not in [x["id"] for x in http.get("/v1/batches", headers=b).json["data"]]
    assert http.get("/v1/batches", headers=a).json["data"][0]["id"] == batch["id"]
    deadline = time.monotonic() + 30
    while http.get(f"/v1/batches/{batch['id']}", headers=a).json["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = http.get(f"/v1/batches/{batch['id']}", headers=a).json
    assert done["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
    assert http.get(f"/v1/files/{done['error_file_id']}/content", headers=b).status_code == 404
    error = json.loads(http.get(f"/v1/files/{done['error_file_id']}/content", headers=a).data)
    assert error["custom_id"] == "mine" and error["error"]["code"] == "model_not_found"


# -- kill -9 of everything mid-batch, on a stack of this test's own ------------------------------------------------

class DurableRedis:
    """A Redis with its append-only file synced on every write, killed and started again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.proc: Proc | None = None

    def start(self) -> str:
        self.proc, url = start_redis(self.directory, port=self.port,
                                     extra=["--appendonly", "yes", "--appendfsync", "always"])
        return url

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.popen.kill()
        self.proc.popen.wait()


@pytest.mark.slow
def test_a_batch_survives_kill_9_of_its_worker_its_api_processes_and_redis(tmp_path, tiny_model):
    """LONG (about 3 minutes on 2 cores): two API processes (two batch threads) and a worker on a Redis with AOF;
    mid-batch both APIs are killed while lines finish (their answers wait in the due set), then the worker
    mid-line, then Redis; all start again and every line is answered exactly once, all succeeded."""
    server = DurableRedis(tmp_path / "redis")
    url = server.start()
    services = Services(tmp_path, url, str(tiny_model), {"redelivery_timeout_s": 6})
    # Leases short, so work a killed API held is taken over within seconds.
    services.env.update(MAOOCR_BATCHES__LEASE_S="3", MAOOCR_BATCHES__SWEEP_S="2")
    port = services.base_url.rsplit(":", 1)[1]
    second = f"http://127.0.0.1:{free_port()}"
    apis: list[Proc] = []
    rounds = iter(range(1, 10))

    def start_apis() -> None:
        n = next(rounds)
        apis[:] = [start_api(int(port), services.env, services.logdir / f"api-{n}"),
                   start_api(int(second.rsplit(":", 1)[1]), services.env, services.logdir / f"api-b-{n}")]
        services.api = apis[0]  # the one its workers' start-up waits on
        for base in (services.base_url, second):
            wait_http(base + "/healthz", apis)

    def kill_apis() -> None:
        for proc in apis:
            proc.popen.kill()
            proc.popen.wait()

    try:
        services.api.stop()  # started by Services with the default leases; these take its place
        start_apis()
        services.start_workers(("llm",))
        client = openai.OpenAI(base_url=second + "/v1", api_key="unused", max_retries=3)
        # Lengths that differ, so some lines end while others still run.
        lines = [chat(f"line-{i}", max_tokens=40 + 70 * i, seed=i) for i in range(12)]
        batch = run_batch(client, tmp_path, lines)
        job_ids = [line_job_id(batch.id, i) for i in range(len(lines))]
        store = redis.Redis.from_url(url, decode_responses=True)

        def ended() -> int:
            return sum(store.hget(JOB_KEY.format(j), "status") == "succeeded" for j in job_ids)

        wait_until(lambda: mid_stream(store, job_ids) >= 1, [], 120)
        kill_apis()  # no batch thread runs now: answers wait in the due set
        wait_until(lambda: ended() >= 2 and mid_stream(store, job_ids) >= 1, [], 180)
        assert store.zcard(BATCHES_DUE_KEY) >= 1
        services.kill_workers()  # mid-line
        server.kill()
        url = server.start()  # the same data, from the append-only file
        store = redis.Redis.from_url(url, decode_responses=True)
        assert store.zcard(BATCHES_DUE_KEY) >= 1 and store.zscore(BATCHES_ACTIVE_KEY, batch.id) is not None
        start_apis()
        services.start_workers(("llm",))

        batch = wait_batch(client, batch.id, timeout_s=420)
        assert batch.status == "completed", batch
        output, errors = answers(client, batch)
        assert_each_line_answered_once(batch, lines, output, errors)
        assert errors == [] and batch.error_file_id is None
        for answer in output:
            index = int(answer["custom_id"].split("-")[1])
            assert answer["response"]["body"]["usage"]["completion_tokens"] == lines[index]["body"]["max_tokens"]
        assert max(int(store.hget(JOB_KEY.format(j), "attempts")) for j in job_ids) >= 2  # one ran again
        assert store.zcard(BATCHES_DUE_KEY) == 0 and store.zscore(BATCHES_ACTIVE_KEY, batch.id) is None
    finally:
        kill_apis()
        services.stop()
        if server.proc is not None:
            server.proc.stop()
