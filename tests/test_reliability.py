"""Accepted jobs survive their workers: `kill -9` mid-job, and SIGTERM with a bounded grace.

Each test owns its Redis, API and workers (workers in their own process groups), so it can kill them freely
without touching the session stack.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import redis
import requests

from bench.reliability import DoneCounter, KillOptions, Services, check_stream, mid_stream, run_kill_test
from maoocr.store.keys import JOB_KEY, REPLAY_KEY

TERMINAL = ("succeeded", "failed", "cancelled")


def generate(base_url: str, max_tokens: int, **extra) -> str:
    reply = requests.post(base_url + "/api/generate", timeout=30, json={
        "prompt": "Tell the story of the archive", "max_tokens": max_tokens, "ignore_eos": True, **extra})
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def job(base_url: str, job_id: str) -> dict:
    return requests.get(f"{base_url}/v1/jobs/{job_id}", timeout=10).json()


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.slow
def test_jobs_survive_repeated_worker_kills(tmp_path, own_redis, tiny_model):
    """LONG (about 3-5 minutes on 2 cores): 54 jobs, generations and 3-page PDFs, through 3 rounds of
    `kill -9` of both workers' process groups while a wave of jobs streams; fresh workers each time."""
    options = KillOptions(llm_jobs=42, ocr_jobs=12, kills=3)
    report = run_kill_test(tmp_path, own_redis, str(tiny_model), options)
    assert report.kills == 3
    assert report.accepted == 54
    assert report.stream_problems == []
    assert (report.lost, report.duplicated, report.failed) == (0, 0, 0)
    assert report.completed == report.accepted  # each succeeded, and reached a terminal state exactly once
    # Every kill landed mid-job: jobs ran again, and free-sampled ones said so on their streams.
    assert len(report.in_flight_at_kills) == 3 and min(report.in_flight_at_kills) >= 1
    assert report.retried >= options.kills
    assert report.stream_restarts >= 1


def test_sigterm_finishes_or_hands_back_jobs_within_the_grace(tmp_path, own_redis, tiny_model):
    grace_s = 1
    services = Services(tmp_path, own_redis, str(tiny_model),
                        {"shutdown_grace_s": grace_s, "redelivery_timeout_s": 600})
    try:
        services.start_workers(("llm",))
        client = redis.Redis.from_url(own_redis, decode_responses=True)
        # Many long jobs at once, so that some are still generating when the grace is over.
        ids = [generate(services.base_url, 1000, seed=i) for i in range(16)] + \
              [generate(services.base_url, 1000, temperature=1.0) for _ in range(8)]
        wait_for(lambda: mid_stream(client, ids) >= 1, 120, "jobs never started streaming")
        worker = services.workers["llm"].popen
        began = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(grace_s + 30)
        took = time.monotonic() - began

        # Nothing is left running: each job was finished in the grace or went back to the queue, untouched.
        records = [job(services.base_url, j) for j in ids]
        assert {r["status"] for r in records} <= {"succeeded", "queued"}, records
        # queued with one attempt: started, then handed back; with none: never taken from the queue
        assert all(r["attempts"] <= 1 for r in records if r["status"] == "queued")
        handed_back = [r for r in records if r["status"] == "queued" and r["attempts"] == 1]
        assert handed_back
        assert grace_s - 0.5 <= took < grace_s + 30  # it waited for them first, and not for ever

        services.start_workers(("llm",))
        for record in handed_back:
            wait_for(lambda: job(services.base_url, record["id"])["status"] in TERMINAL, 300, "not done")
        for job_id in ids:
            record = job(services.base_url, job_id)
            assert record["status"] == "succeeded", record
            assert check_stream(client, record) == []
        assert all(job(services.base_url, r["id"])["attempts"] == 2 for r in handed_back)
    finally:
        services.stop()


def test_a_worker_frozen_past_its_heartbeat_writes_nothing_into_the_job_that_replaced_it(
        tmp_path, own_redis, tiny_model):
    """A worker stopped mid-job (a long pause, a VM freeze) long enough for its job to be taken over, then
    resumed: it runs its own attempt on to the end, but neither its chunks nor its outcome reach the job."""
    services = Services(tmp_path, own_redis, str(tiny_model), {"redelivery_timeout_s": 4})
    services.env["MAOOCR_TTLS__HEARTBEAT_S"] = "3"
    client = redis.Redis.from_url(own_redis, decode_responses=True)
    counter = DoneCounter(client)
    frozen = None
    try:
        services.start_workers(("llm",))
        frozen = services.workers["llm"]  # "llm-1"
        job_id = generate(services.base_url, 1000, seed=7)
        wait_for(lambda: mid_stream(client, [job_id]) >= 1, 120, "the job never started streaming")
        os.killpg(frozen.popen.pid, signal.SIGSTOP)  # the worker and its engine core
        services.start_workers(("llm",))  # "llm-2": takes the job over once llm-1's heartbeat has expired
        wait_for(lambda: job(services.base_url, job_id)["status"] in TERMINAL, 180, "the takeover never finished")
        record = job(services.base_url, job_id)
        assert record["status"] == "succeeded" and record["attempts"] == 2, record
        assert client.hget(JOB_KEY.format(job_id), "worker").startswith("llm-2 ")
        assert check_stream(client, record) == []

        os.killpg(frozen.popen.pid, signal.SIGCONT)
        # Logged by its runner once its fenced outcome was refused: the attempt has ended and written nothing.
        wait_for(lambda: "while it ran here" in frozen.log.read_text(errors="replace"), 120,
                 "the resumed worker never ended its attempt")
        assert job(services.base_url, job_id) == record  # outcome unchanged
        assert check_stream(client, record) == []  # no chunk of the old attempt after the takeover
        assert counter.counts[job_id] == 1  # one terminal transition
    finally:
        counter.stop()
        if frozen is not None:
            try:
                os.killpg(frozen.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            frozen.popen.wait()
        services.stop()


def test_two_workers_of_one_model_share_its_queue_and_one_dies_mid_stream(tmp_path, own_redis, tiny_model):
    """Scaling out: two LLM workers of the same model under their own names (as on two GPU hosts) take jobs from
    one queue; `kill -9` of one mid-stream leaves every job done exactly once, its jobs on the other."""
    services = Services(tmp_path, own_redis, str(tiny_model), {"redelivery_timeout_s": 6})
    client = redis.Redis.from_url(own_redis, decode_responses=True)
    counter = DoneCounter(client)
    try:
        # Three jobs at a time each: a batch of eight cannot all go to the worker that asks first.
        services.start_named_workers(["gpu-host-a", "gpu-host-b"], ["--cpu", "--concurrency", "3"])
        ids = [generate(services.base_url, 400, seed=i) if i % 2 else generate(services.base_url, 400,
                                                                                temperature=1.0)
               for i in range(8)]

        def running_on() -> dict[str, str]:
            workers = {j: client.hget(JOB_KEY.format(j), "worker") or "" for j in ids}
            return {j: w.split(" ")[0] for j, w in workers.items() if w}

        wait_for(lambda: set(running_on().values()) == {"gpu-host-a", "gpu-host-b"} and mid_stream(client, ids) >= 2,
                 120, "the jobs never streamed on both workers")
        on_a = [j for j, w in running_on().items() if w == "gpu-host-a"
                and client.hget(JOB_KEY.format(j), "status") == "running"]
        assert on_a, running_on()
        streamed = {j for j in on_a if client.llen(REPLAY_KEY.format(j))}
        services.kill_worker("gpu-host-a")

        wait_for(lambda: all(job(services.base_url, j)["status"] in TERMINAL for j in ids), 300,
                 "not every job ended after the kill")
        time.sleep(2)  # a second terminal transition, if any, would show on the done channel now
        records = {j: job(services.base_url, j) for j in ids}
        assert [r["status"] for r in records.values()] == ["succeeded"] * len(ids), records
        assert all(counter.counts[j] == 1 for j in ids), counter.counts  # each ended once
        for record in records.values():
            assert check_stream(client, record) == [], record["id"]
        for job_id in on_a:  # the killed worker's jobs ran again, to the end, on the other worker
            assert records[job_id]["attempts"] == 2, records[job_id]
            assert client.hget(JOB_KEY.format(job_id), "worker").startswith("gpu-host-b ")
        # Free-sampled ones that had streamed said so on their streams (a seeded one goes on where it stopped).
        restarted = {j for j in on_a if any(json.loads(c)["event"] == "restart"
                                            for c in client.lrange(REPLAY_KEY.format(j), 0, -1))}
        assert {j for j in streamed if ids.index(j) % 2 == 0} <= restarted
        assert not {j for j in restarted if ids.index(j) % 2 == 1}
    finally:
        counter.stop()
        services.stop()
