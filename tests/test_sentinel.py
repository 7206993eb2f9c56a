"""Redis Sentinel: a stack on a sentinel:// URL keeps its accepted jobs and their streams when the master is
`kill -9`ed mid-stream and Sentinel promotes the replica; new jobs are accepted afterwards. Real processes on
loopback: a master, one replica, three Sentinels (quorum 2), the API and an LLM worker."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid

import pytest
import requests

from bench.reliability import check_stream, mid_stream
from devtools.processes import settings_for, start_redis, start_stack
from devtools.sentinel import SentinelRedis
from maoocr.store.client import connect
from maoocr.store.jobs import JobStore
from workers.celery_app import create_celery_app

PASSWORD = "ha-pw"
JOBS = 6
TOKENS = 300


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    redis_set = SentinelRedis(tmp_path_factory.mktemp("sentinel"), PASSWORD)
    yield redis_set
    redis_set.stop()


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory, ha, tiny_model):
    # Job creation waits for the replica (redis_wait_replicas): an accepted job is on it before the API answers.
    stack = start_stack(tmp_path_factory.mktemp("sentinel-stack"), ha.url, str(tiny_model),
                        env={"MAOOCR_REDIS_WAIT_REPLICAS": "1"})
    yield stack
    stack.stop()


def test_job_store_streams_and_celery_find_the_master_through_sentinel(ha, tmp_path):
    client = connect(ha.url)
    record = JobStore(client, 60, wait_replicas=1).create("generation", model="m")
    assert client.hget(f"maoocr:job:{record.id}", "status") == "queued"
    app = create_celery_app(settings_for(ha.url, tmp_path), batched_intake=True)
    assert app.conf.broker_transport == "workers.batched_intake:SentinelTransport"
    queue = f"maoocr.test.{uuid.uuid4().hex}"
    app.send_task("maoocr.nothing", args=[{"x": 1}], queue=queue, ignore_result=True)
    assert client.llen(queue) == 1  # the broker found the master and published there
    task_id = uuid.uuid4().hex
    app.backend.store_result(task_id, {"pages": 1}, "SUCCESS")
    assert app.AsyncResult(task_id).get(timeout=5) == {"pages": 1}


def test_job_creation_waits_for_a_replica_and_goes_on_without_one(tmp_path, caplog):
    master, url = start_redis(tmp_path / "master")
    port = url.rsplit(":", 1)[1].split("/")[0]
    replica, at_replica = start_redis(tmp_path / "replica", extra=["--replicaof", "127.0.0.1", port])
    try:
        jobs = JobStore(connect(url), 60, wait_replicas=1, wait_timeout_ms=400)
        replica_client = connect(at_replica)
        deadline = time.monotonic() + 30
        while replica_client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.1)
        started = time.monotonic()
        record = jobs.create("generation", model="m")
        assert time.monotonic() - started < 0.4  # acknowledged by the replica, not timed out
        assert replica_client.hget(f"maoocr:job:{record.id}", "status") == "queued"

        replica.popen.send_signal(signal.SIGSTOP)  # a replica that does not answer: the wait times out
        try:
            with caplog.at_level(logging.WARNING, logger="maoocr.store.combined_calls"):
                started = time.monotonic()
                late = jobs.create("generation", model="m")
                took = time.monotonic() - started
        finally:
            replica.popen.send_signal(signal.SIGCONT)
        assert 0.4 <= took < 5
        assert jobs.get(late.id).status == "queued"  # accepted anyway
        assert "0 of 1 replica(s) acknowledged within 400 ms" in caplog.text and late.id in caplog.text
    finally:
        replica.stop()
        master.stop()


class EventsFollower(threading.Thread):
    """`GET /v1/jobs/<id>/events` to the end. With `reconnect`, it hangs up at the first event after `hang_up`
    is set and connects again with Last-Event-ID, as a browser's EventSource does after a dropped connection."""

    def __init__(self, base_url: str, job_id: str, hang_up: threading.Event | None = None) -> None:
        super().__init__(daemon=True)
        self.base_url, self.job_id, self.hang_up = base_url, job_id, hang_up
        self.chunks: list[dict] = []
        self.reconnects = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._follow():
                self.reconnects += 1
        except BaseException as exc:
            self.error = exc

    def _follow(self) -> bool:
        """True once the end chunk arrived; False after hanging up."""
        headers = {"Last-Event-ID": str(self.chunks[-1]["seq"])} if self.chunks else {}
        with requests.get(f"{self.base_url}/v1/jobs/{self.job_id}/events", headers=headers, stream=True,
                          timeout=300) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines(decode_unicode=True):
                if not line.startswith("data: "):
                    continue
                self.chunks.append(json.loads(line[len("data: "):]))
                if self.chunks[-1]["finished"]:
                    return True
                if self.hang_up is not None and self.hang_up.is_set() and not self.reconnects:
                    return False
        raise AssertionError(f"job {self.job_id}: the events stream ended without its end chunk")

    def text(self) -> str:
        restarts = [i for i, c in enumerate(self.chunks) if c["event"] == "restart"]
        after = self.chunks[restarts[-1] + 1:] if restarts else self.chunks
        return "".join(c["delta"] or "" for c in after if c["event"] == "token" and c["index"] == 0)


def submit(base_url: str, i: int) -> str:
    reply = requests.post(base_url + "/api/generate", timeout=30, json={
        "prompt": f"Job {i}: the archive's story", "max_tokens": TOKENS, "ignore_eos": True, "seed": i})
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def test_accepted_jobs_and_their_streams_survive_a_master_failover(ha, ha_stack):
    stack = ha_stack
    client = connect(ha.url)
    ids = [submit(stack.base_url, i) for i in range(JOBS)]
    hang_up = threading.Event()
    # Half the clients keep their connection through the failover (the API resumes their stream); the other half
    # hang up and come back with Last-Event-ID.
    followers = [EventsFollower(stack.base_url, job_id, hang_up if i % 2 else None) for i, job_id in enumerate(ids)]
    for follower in followers:
        follower.start()
    deadline = time.monotonic() + 120
    while mid_stream(client, ids) < JOBS // 2 or not all(f.chunks for f in followers):
        assert time.monotonic() < deadline, "the jobs never started streaming"
        time.sleep(0.05)

    old_port = ha.master_port
    ha.master.stop(signal.SIGKILL)
    hang_up.set()
    promoted = ha.wait_promoted(away_from=old_port)
    assert promoted[1] == ha.replica_port

    for follower in followers:
        follower.join(timeout=300)
        assert not follower.is_alive(), f"job {follower.job_id}: its events stream never ended"
        assert follower.error is None, follower.error
    records = [requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=30).json() for job_id in ids]
    assert [r["status"] for r in records] == ["succeeded"] * JOBS, records
    assert all(r["result"]["usage"]["completion_tokens"] == TOKENS for r in records)
    for follower, record in zip(followers, records, strict=True):
        seqs = [c["seq"] for c in follower.chunks]
        assert seqs == list(range(len(seqs))), f"job {record['id']}: a chunk was lost or repeated"
        assert [c["finished"] for c in follower.chunks].count(True) == 1
        assert follower.text() == record["result"]["choices"][0]["text"]
        assert check_stream(client, record) == []  # the stream record on the new master: gap-free, one end
    assert sum(f.reconnects for f in followers) == JOBS // 2  # each hung-up client came back once

    # The stack goes on with the new master: new jobs are accepted and run.
    waited = requests.post(stack.base_url + "/api/generate", timeout=120,
                           json={"prompt": "after the failover", "max_tokens": 4, "ignore_eos": True, "wait": True})
    assert waited.status_code == 200 and waited.json()["usage"]["completion_tokens"] == 4
    assert all(p.popen.poll() is None for p in stack.procs), "a process died in the failover"
