"""Redis goes away and comes back (same port, same data dir, append-only file on, a password): the API answers
503 meanwhile, the worker reconnects by itself, every job accepted before the outage completes, and an events
stream open across the outage goes on where it paused."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
import requests

from devtools import docgen
from devtools.processes import Proc, start_redis, start_stack
from maoocr.embedded import free_port
from maoocr.store.job_events import JobDoneListener
from maoocr.store.keys import DONE_CHANNEL

PASSWORD = "outage-pw"
JOBS = 10
TOKENS = 120


class Outage:
    """A persistent Redis that can be stopped and started again with its data."""

    def __init__(self, directory, port: int) -> None:
        self.directory, self.port = directory, port
        self.proc: Proc | None = None
        self.url = ""

    def start(self) -> str:
        self.proc, self.url = start_redis(self.directory, port=self.port, password=PASSWORD,
                                          extra=["--appendonly", "yes", "--appendfsync", "always"])
        return self.url

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()  # SIGTERM: a clean stop, as an operator or orchestrator does it


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    server = Outage(tmp_path_factory.mktemp("outage-redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory, outage, tiny_model):
    # Two jobs at a time: while the first run, the rest wait in Redis's queue, so the outage hits both a
    # running job and queued ones.
    stack = start_stack(tmp_path_factory.mktemp("outage-stack"), outage.url, str(tiny_model),
                        worker_args=["--cpu", "--concurrency", "2"])
    yield stack
    stack.stop()


def submit(stack, tokens: int = TOKENS) -> str:
    reply = requests.post(stack.base_url + "/api/generate", timeout=30,
                          json={"prompt": "a job accepted before the outage", "max_tokens": tokens, "ignore_eos": True})
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def job(stack, job_id: str) -> dict:
    return requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=30).json()


def assert_503(reply: requests.Response, started: float) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"] == {"code": "service_unavailable",
                                     "message": "the job store (Redis) is unavailable; retry shortly"}
    assert reply.headers["Retry-After"] == "5"
    assert time.monotonic() - started < 10  # an answer, not a hang


def test_accepted_jobs_survive_a_redis_outage(outage, outage_stack):
    stack = outage_stack
    accepted = [submit(stack) for _ in range(JOBS)]
    deadline = time.monotonic() + 120
    while not any(job(stack, j)["status"] == "running" for j in accepted):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # A client following a job's events when Redis goes away: its stream pauses and goes on, nothing lost.
    followed: list[dict] = []
    follower = threading.Thread(target=follow_events, args=(stack, accepted[0], followed), daemon=True)
    follower.start()
    deadline = time.monotonic() + 60
    while not followed:  # the stream has started (the follower has its first chunk)
        assert time.monotonic() < deadline and follower.is_alive()
        time.sleep(0.05)

    outage.stop()
    page = docgen.encode(docgen.numbered_pages(1)[0].image, "PNG")
    for method, path, kwargs in [
        ("GET", f"/v1/jobs/{accepted[0]}", {}),
        ("GET", f"/v1/jobs/{accepted[0]}/result", {}),
        ("GET", f"/v1/jobs/{accepted[0]}/events", {}),
        ("DELETE", f"/v1/jobs/{accepted[-1]}", {}),
        ("POST", "/api/generate", {"json": {"prompt": "x", "max_tokens": 2}}),
        ("POST", "/api/generate", {"json": {"prompt": "x", "max_tokens": 2, "wait": True}}),
        ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}}),
        ("POST", "/v1/completions", {"json": {"prompt": "x", "max_tokens": 2, "stream": True}}),
        ("GET", "/v1/models", {}),
        ("POST", "/v1/documents", {"files": {"file": ("p.png", page)}}),
    ]:
        started = time.monotonic()
        assert_503(requests.request(method, stack.base_url + path, timeout=30, **kwargs), started)
    ready = requests.get(stack.base_url + "/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["redis"].startswith("down")
    assert requests.get(stack.base_url + "/healthz", timeout=10).status_code == 200
    time.sleep(5)  # long enough for the worker's broker connection and listeners to notice
    assert all(p.popen.poll() is None for p in stack.procs), "a process died during the outage"

    outage.start()  # same port, same directory: the append-only file brings the queue and the records back
    deadline = time.monotonic() + 300
    records = {}
    while len(records) < JOBS:
        assert time.monotonic() < deadline, {j: job(stack, j)["status"] for j in accepted if j not in records}
        for job_id in accepted:
            if job_id not in records:
                record = job(stack, job_id)
                if record["status"] in ("succeeded", "failed", "cancelled"):
                    records[job_id] = record
        time.sleep(0.5)
    assert {r["status"] for r in records.values()} == {"succeeded"}, records
    assert all(r["result"]["usage"]["completion_tokens"] == TOKENS for r in records.values())
    follower.join(timeout=120)
    assert not follower.is_alive(), "the events stream did not end after the outage"
    assert [c["seq"] for c in followed] == list(range(len(followed))), "a chunk was lost or repeated"
    assert [c["event"] for c in followed].count("end") == 1 and followed[-1]["finish_reason"] == "length"
    text = "".join(c["delta"] or "" for c in followed if c["event"] == "token")
    assert text == records[accepted[0]]["result"]["choices"][0]["text"]

    # The worker took up the queue again by itself; it serves new work and its heartbeat is back.
    # This stack has no OCR worker: readiness of its model's LLM worker alone.
    assert requests.get(stack.base_url + "/readyz?model=tiny", timeout=30).status_code == 200
    both = requests.get(stack.base_url + "/readyz", timeout=30)  # OCR jobs would wait: not ready for both kinds
    assert both.status_code == 503 and both.json()["missing"] == ["an OCR worker"], both.text
    waited = requests.post(stack.base_url + "/api/generate", timeout=120,
                           json={"prompt": "after", "max_tokens": 4, "ignore_eos": True, "wait": True})
    assert waited.status_code == 200 and waited.json()["usage"]["completion_tokens"] == 4


def follow_events(stack, job_id: str, into: list[dict]) -> None:
    """`GET /v1/jobs/<id>/events` to its end, each chunk appended to `into` as it arrives."""
    with requests.get(f"{stack.base_url}/v1/jobs/{job_id}/events", stream=True, timeout=300) as reply:
        for line in reply.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                into.append(json.loads(line[len("data: "):]))


def test_cancel_reaches_the_engine_after_the_outage(outage, outage_stack):
    """The worker's cancel listener re-subscribed: a cancelled job stops early in the engine, not at max_tokens."""
    stack = outage_stack
    tokens = 900
    job_id = submit(stack, tokens)
    deadline = time.monotonic() + 60
    while job(stack, job_id)["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert requests.delete(f"{stack.base_url}/v1/jobs/{job_id}", timeout=30).json()["status"] == "cancelled"
    events = requests.get(f"{stack.base_url}/v1/jobs/{job_id}/events", timeout=120)
    deltas = [line for line in events.text.splitlines() if line.startswith("data: ") and '"event":"token"' in line]
    assert events.text.rstrip().splitlines()[-1].count('"finish_reason":"cancelled"') == 1
    assert len(deltas) < tokens // 2


def test_job_done_listener_resubscribes(tmp_path):
    """The API's shared job-done listener hears jobs finish after Redis restarted under it."""
    port = free_port()
    proc, url = start_redis(tmp_path, port=port)
    try:
        listener = JobDoneListener(redis.Redis.from_url(url, decode_responses=True))
        event = listener.register("j1")
        proc.stop()
        time.sleep(2)
        proc, url = start_redis(tmp_path, port=port)
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        # Publish until heard: the listener re-subscribes within a second or two of Redis coming back.
        while not event.is_set():
            assert time.monotonic() < deadline, "the job-done listener never re-subscribed"
            client.publish(DONE_CHANNEL.format("j1"), "succeeded")
            event.wait(0.2)
        listener.unregister("j1", event)
    finally:
        proc.stop()
    # No one waits any more: the listener stops trying the Redis that is gone, without a word.
    deadline = time.monotonic() + 30
    while listener._thread is not None:
        assert time.monotonic() < deadline, "the job-done listener kept reconnecting with no one waiting"
        time.sleep(0.2)
    again = listener.register("j2")  # and starts again for the next waiter
    assert listener._thread is not None and not again.is_set()
    listener.unregister("j2", again)


def test_stream_writer_keeps_chunks_through_an_outage(tmp_path):
    """Chunks published while Redis is down reach the replay list once it is back, in order, none lost."""
    from maoocr.protocol.generation import StreamChunk
    from maoocr.store.client import connect
    from maoocr.store.streams import StreamStore, StreamWriter

    port = free_port()
    proc, url = start_redis(tmp_path, port=port, extra=["--appendonly", "yes", "--appendfsync", "always"])
    try:
        store = StreamStore(connect(url, patient=True), ttl_s=600)
        writer = StreamWriter(store)
        writer.publish(StreamChunk(job_id="w", delta="0"))
        writer.flush()
        proc.stop()
        for i in range(1, 50):
            writer.publish(StreamChunk(job_id="w", delta=str(i)))
        time.sleep(2)  # the writer retries meanwhile, holding the chunks
        proc, url = start_redis(tmp_path, port=port, extra=["--appendonly", "yes", "--appendfsync", "always"])
        writer.flush(timeout_s=60)
        writer.close()
        replayed = store.replay("w")
        # The writer may join a job's queued token deltas into fewer chunks; none is lost or reordered.
        assert "".join(c.delta for c in replayed) == "".join(str(i) for i in range(50))
        assert [c.seq for c in replayed] == list(range(len(replayed)))
    finally:
        proc.stop()
