"""`JobStore.wait`: what a waiting request (`"wait": true`) gets back — the whole finished record, someone else's or a
missing job as not found, a timeout as TimeoutError."""

from __future__ import annotations

import threading
import time

import pytest

from maoocr.errors import JobNotFound
from maoocr.store.jobs import JobStore


def test_wait_returns_the_whole_record_once_the_job_ends(redis_client):
    jobs = JobStore(redis_client, 60)
    job = jobs.create("generation", model="tiny", owner="alice").id
    jobs.claim(job, "w1 aaa")

    def finish_later() -> None:
        time.sleep(0.3)
        jobs.transition(job, ("running",), "succeeded", result={"text": "done"})

    threading.Thread(target=finish_later).start()
    started = time.monotonic()
    record = jobs.wait(job, timeout_s=10, owner="alice")
    assert time.monotonic() - started >= 0.25  # it waited for the end, woken by the done channel
    assert record.status == "succeeded" and record.result == {"text": "done"} and record.worker == "w1 aaa"
    assert jobs.wait(job, timeout_s=10).result == {"text": "done"}  # already ended: at once


def test_wait_sees_someone_elses_or_a_missing_job_as_not_found_and_times_out(redis_client):
    jobs = JobStore(redis_client, 60)
    job = jobs.create("generation", model="tiny", owner="alice").id
    with pytest.raises(JobNotFound):
        jobs.wait(job, timeout_s=1, owner="bob")
    with pytest.raises(JobNotFound):
        jobs.wait("no-such-job", timeout_s=1)
    with pytest.raises(TimeoutError):
        jobs.wait(job, timeout_s=0.3, owner="alice")
