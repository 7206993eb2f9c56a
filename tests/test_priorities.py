"""Job priorities: the queue lists a job waits in are kombu's own, a worker takes the most urgent jobs first and
keeps slots free for them under a bulk backlog, and inside the engine an urgent request overtakes bulk ones that
wait for a sequence slot."""

from __future__ import annotations

import pytest
import redis
import requests
from kombu.transport import redis as kombu_redis

from bench.holding_worker import QUEUE, RELEASE, STARTED
from bench.intake import send
from devtools import docgen
from devtools.processes import private_stack, start_module, wait_for_job, wait_until
from api.app import create_app
from maoocr.auth import digest, owner_id
from maoocr.config import AuthSettings, PrioritySettings
from maoocr.priorities import PRIORITY_STEPS, job_priority, queue_list, reserved_slots
from maoocr.store.keys import JOB_KEY

INTERACTIVE, BULK = 3, 6


class _Steps(kombu_redis.Channel):
    """kombu's own mapping of a priority to its list, without a connection."""

    def __init__(self) -> None:  # priority() and _q_for_pri() read class attributes only
        pass


def test_queue_lists_are_kombus_own():
    kombu = _Steps()
    assert tuple(kombu.priority_steps) == PRIORITY_STEPS and kombu.sep == "\x06\x16"
    for priority in range(10):
        assert queue_list("q", priority) == kombu._q_for_pri("q", priority)


def test_a_jobs_priority_is_its_own_else_its_keys_else_the_servers():
    settings = PrioritySettings(interactive=3, bulk=7, key_defaults={"k1": 1})
    assert job_priority(settings, None, None) == 3
    assert job_priority(settings, None, "k1") == 1 and job_priority(settings, None, "k2") == 3
    assert job_priority(settings, None, "k1", bulk=True) == 7  # a key's default is for its interactive jobs
    assert job_priority(settings, 0, "k1", bulk=True) == 0
    assert job_priority(settings, "bulk", "k1") == 7 and job_priority(settings, "interactive", "k1", bulk=True) == 1
    assert [reserved_slots(n, 0.0625) for n in (1, 2, 16, 64, 512)] == [0, 1, 1, 4, 32]
    assert reserved_slots(64, 0) == 0


def started(client: redis.Redis) -> list[int]:
    return [int(entry.split()[0]) for entry in client.lrange(STARTED, 0, -1)]


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "stock"])
def test_a_worker_takes_urgent_jobs_first(broker, batched):
    client, app, env, logs = broker
    send(app, range(0, 10), priority=BULK)
    send(app, range(100, 103), priority=9)
    send(app, range(10, 15), priority=INTERACTIVE)  # queued last, taken first
    client.set(RELEASE, 1)  # every job ends at once: one slot, so they start in the order they are taken
    worker = start_module("held", "bench.holding_worker",
                          ["--concurrency", "1", *(["--batched-intake"] if batched else [])], env, logs)
    try:
        wait_until(lambda: client.llen(STARTED) == 18, [worker], timeout_s=60)
        assert started(client) == [*range(10, 15), *range(0, 10), *range(100, 103)]
    finally:
        worker.stop()


def test_bulk_jobs_leave_the_reserved_slots_to_urgent_ones(broker):
    client, app, env, logs = broker
    send(app, range(20), priority=BULK)
    worker = start_module("held", "bench.holding_worker",
                          ["--concurrency", "8", "--batched-intake", "--interactive-reserve", "2"], env, logs)
    try:
        wait_until(lambda: client.llen(STARTED) == 6, [worker], timeout_s=60)
        send(app, [100], priority=INTERACTIVE)
        wait_until(lambda: client.llen(STARTED) == 7, [worker], timeout_s=30)
        send(app, [101], priority=0)
        wait_until(lambda: client.llen(STARTED) == 8, [worker], timeout_s=30)
        # Still only six bulk jobs: the backlog never took the two reserved slots.
        assert sorted(started(client)) == [*range(6), 100, 101]
        assert client.llen(queue_list(QUEUE, BULK)) == 14
        client.set(RELEASE, 1)
        wait_until(lambda: client.llen(STARTED) == 22, [worker], timeout_s=60)
        assert sorted(started(client)) == [*range(20), 100, 101]
    finally:
        worker.stop()


def test_an_urgent_request_overtakes_bulk_requests_waiting_inside_the_engine(tmp_path, tiny_model):
    """Two sequence slots in the engine and seven jobs let in by the worker (no slots reserved): five requests
    wait inside the engine. The urgent one, sent last, is the next to start there."""
    with private_stack(tmp_path, str(tiny_model), model={"max_num_seqs": 2},
                       worker_args=["--cpu", "--concurrency", "7"],
                       env={"MAOOCR_PRIORITIES__INTERACTIVE_RESERVE": "0"}) as stack:
        def generate(priority, max_tokens):
            reply = requests.post(f"{stack.base_url}/api/generate", timeout=30, json={
                "prompt": "tell me a long story", "max_tokens": max_tokens, "ignore_eos": True,
                "priority": priority})
            assert reply.status_code == 202, reply.text
            return reply.json()["job_id"]

        bulk = [generate("bulk", 160) for _ in range(6)]
        wait_until(lambda: all(requests.get(f"{stack.base_url}/v1/jobs/{job}", timeout=10).json()["status"]
                               == "running" for job in bulk), stack.procs, timeout_s=120)
        urgent = generate(0, 8)
        records = {job: wait_for_job(stack, job) for job in [*bulk, urgent]}
    assert all(record["status"] == "succeeded" for record in records.values()), records
    assert records[urgent]["priority"] == 0 and records[bulk[0]]["priority"] == 6
    # First come, first served would start it after the four bulk requests waiting before it, so it would end
    # after at least two of them; started next, its 8 tokens end before any of them.
    ends = sorted(records[job]["finished_at"] for job in bulk)
    assert records[urgent]["finished_at"] < ends[2], (records[urgent]["finished_at"], ends)


@pytest.mark.parametrize("named,expected", [(None, 3), ("bulk", 6), ("interactive", 3), (0, 0), (9, 9)])
def test_every_api_records_the_priority_a_request_names(stack, named, expected):
    extra = {} if named is None else {"priority": named}
    generate = requests.post(f"{stack.base_url}/api/generate", timeout=60,
                             json={"prompt": "hi", "max_tokens": 2, **extra})
    chat = requests.post(f"{stack.base_url}/v1/chat/completions", timeout=120,
                         json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra})
    page = docgen.encode(docgen.numbered_pages(1)[0].image, "PNG")
    document = requests.post(f"{stack.base_url}/v1/documents", files={"file": ("p.png", page)},
                             data={"strategy": "fast", **({} if named is None else {"priority": str(named)})},
                             timeout=60)
    assert generate.status_code == 202 and chat.status_code == 200 and document.status_code == 202
    jobs = [generate.json()["job_id"], chat.json()["id"].split("-", 1)[1], document.json()["job_id"]]
    assert [wait_for_job(stack, job)["priority"] for job in jobs] == [expected] * 3


@pytest.mark.parametrize("bad", [10, -1, "urgent", 2.5])
def test_a_priority_out_of_range_is_a_400_that_says_so(stack, bad):
    reply = requests.post(f"{stack.base_url}/api/generate", json={"prompt": "hi", "priority": bad}, timeout=30)
    assert reply.status_code == 400 and "priority" in reply.text, reply.text
    form = requests.post(f"{stack.base_url}/v1/documents", files={"file": ("p.png", b"x")},
                         data={"priority": str(bad)}, timeout=30)
    assert form.status_code == 400 and "priority" in form.json()["error"]["message"], form.text


def test_an_api_keys_default_priority_is_for_its_interactive_jobs(stack_settings):
    """On an app of this test's own settings (the session's Redis, API keys on, one key with a default)."""
    settings = stack_settings.model_copy(update={
        "auth": AuthSettings(api_keys=["key-one", "key-two"]),
        "priorities": PrioritySettings(key_defaults={owner_id(digest("key-one")): 1})})
    app = create_app(settings)
    try:
        http = app.test_client()

        def priority_of(key: str, **named) -> int:
            reply = http.post("/api/generate", headers={"Authorization": f"Bearer {key}"},
                              json={"prompt": "hi", "max_tokens": 2, **named})
            assert reply.status_code == 202, reply.get_data(as_text=True)
            return int(redis.Redis.from_url(settings.redis_url).hget(JOB_KEY.format(reply.json["job_id"]),
                                                                     "priority"))

        assert priority_of("key-one") == 1 and priority_of("key-two") == 3
        assert priority_of("key-one", priority="bulk") == 6 and priority_of("key-one", priority=8) == 8
    finally:
        app.extensions["maoocr.batches"].stop()
