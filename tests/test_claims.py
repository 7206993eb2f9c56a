"""Who runs a job: a delivered-again copy waits for a live worker, takes over from a dead one, skips a finished job."""

from __future__ import annotations

import json

from maoocr.protocol.generation import StreamChunk
from maoocr.store.jobs import TAKEN_OVER, JobStore
from maoocr.store.keys import WORKER_KEY
from maoocr.store.streams import FENCED, StreamStore


def beat(redis_client, name: str, instance: str) -> None:
    redis_client.set(WORKER_KEY.format(name), json.dumps({"name": name, "instance": instance}), ex=30)


def test_claims_follow_the_running_worker_heartbeat(redis_client):
    jobs = JobStore(redis_client, 60)
    job = jobs.create("generation", model="tiny").id
    beat(redis_client, "w1", "aaa")
    assert jobs.claim(job, "w1 aaa")[:2] == (1, "queued")
    assert jobs.claim(job, "w2 bbb")[:2] == (0, "busy")  # w1 is alive: the copy waits
    assert jobs.claim(job, "w1 aaa")[:2] == (0, "busy")  # its own job delivered again: not run twice

    beat(redis_client, "w1", "ccc")  # w1 restarted under the same name: the old process is gone
    takeover = jobs.claim(job, "w1 ccc")
    assert takeover[:2] == (2, "running") and takeover.previous_worker == "w1 aaa"
    assert takeover.created_at == jobs.get(job).created_at > 0
    redis_client.delete(WORKER_KEY.format("w1"))  # that one died too (heartbeat expired)
    assert jobs.claim(job, "w2 bbb")[:2] == (3, "running")
    assert jobs.get(job).worker == "w2 bbb" and jobs.get(job).attempts == 3

    jobs.transition(job, ("running",), "succeeded", result={})
    assert jobs.claim(job, "w3 ddd")[:2] == (0, "succeeded")
    assert jobs.claim("no-such-job", "w3 ddd")[:2] == (0, "missing")


def test_only_the_running_worker_hands_a_job_back(redis_client):
    jobs = JobStore(redis_client, 60)
    job = jobs.create("generation", model="tiny").id
    jobs.claim(job, "w1 aaa")
    assert not jobs.release(job, "w2 bbb")
    assert jobs.release(job, "w1 aaa")
    assert jobs.get(job).status == "queued"
    assert jobs.claim(job, "w2 bbb")[:2] == (2, "queued")


def token(job_id: str, text: str) -> StreamChunk:
    return StreamChunk(job_id=job_id, delta=text)


def test_a_worker_whose_job_was_taken_over_writes_neither_chunks_nor_outcome(redis_client):
    jobs, streams = JobStore(redis_client, 60), StreamStore(redis_client, 60)
    job = jobs.create("generation", model="tiny").id
    other = jobs.create("generation", model="tiny").id
    jobs.claim(job, "w1 aaa")  # no heartbeat for w1: the next claim takes the job over
    jobs.claim(other, "w1 aaa")
    assert streams.append([token(job, "a")], fence="w1 aaa") == [0]
    assert jobs.claim(job, "w2 bbb")[:2] == (2, "running")

    # One batch of the old worker: the job taken over is kept out, its other job still goes in.
    assert streams.append([token(job, "b"), token(other, "x"), token(job, "c")], fence="w1 aaa") == [FENCED, 0, FENCED]
    assert streams.append([token(job, "d")], fence="w2 bbb") == [1]
    assert jobs.transition(job, ("running",), "succeeded", fence="w1 aaa", result={}) == (False, TAKEN_OVER)
    assert jobs.transition(job, ("running",), "failed", fence="w1 aaa") == (False, TAKEN_OVER)
    assert jobs.get(job).status == "running"
    assert jobs.transition(job, ("running",), "succeeded", fence="w2 bbb", result={}) == (True, "running")
    assert [c.delta for c in streams.replay(job)] == ["a", "d"]
    assert [c.delta for c in streams.replay(other)] == ["x"]

    # Unfenced writers (the API ending a cancelled job's stream) are not affected; nor is a finished job's
    # own worker ending its stream.
    assert streams.append([token(job, "e")]) == [2]
    assert streams.append([token(job, "f")], fence="w2 bbb") == [3]
    assert jobs.transition(other, ("running",), "cancelled") == (True, "running")
    assert jobs.transition(other, ("running",), "failed", fence="w1 aaa") == (False, "cancelled")
