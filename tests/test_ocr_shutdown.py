"""An OCR worker's stop is bounded: on SIGTERM it finishes its pages for up to `worker.shutdown_grace_s`, then stops
cold and its unfinished pages go straight back to the queue (not after the hour-long redelivery timeout).

The slow page is a 'vlm' page whose transcription waits on the VLM's queue, which nobody consumes: the LLM worker
is stopped, and a heartbeat from this test says the VLM is served (a worker alive but stuck), so the page does not
fall back to PP-OCR. The VLM call's own timeout is 300 s: without the bound, Celery's warm shutdown waits for it.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import redis
import requests

from devtools import docgen
from devtools.processes import private_stack, start_module, wait_for_job, wait_until
from maoocr.store.heartbeats import Heartbeat
from maoocr.store.keys import JOB_KEY

GRACE_S = 2


@pytest.fixture(scope="module")
def vlm_stack(tmp_path_factory):
    from maoocr.engines.demo_vlm import build_demo_vlm

    docgen.require_fonts()
    path = build_demo_vlm(tmp_path_factory.mktemp("tiny-vlm"))
    env = {"MAOOCR_OCR__VLM_MODEL": "tiny", "MAOOCR_OCR__VLM_MAX_TOKENS": "16",
           "MAOOCR_WORKER__SHUTDOWN_GRACE_S": str(GRACE_S)}
    with private_stack(tmp_path_factory.mktemp("ocr-stop"), str(path), ocr_worker=True, env=env,
                       model={"model_type": "multimodal", "max_model_len": 2048, "max_num_seqs": 8}) as running:
        yield running


def queued_generations(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return sum(1 for key in client.scan_iter(JOB_KEY.format("*")) if key.count(":") == 2
               and client.hget(key, "kind") == "generation")


def test_a_stopping_ocr_worker_hands_its_pages_back_within_the_grace(vlm_stack):
    procs = {proc.name: proc for proc in vlm_stack.procs}
    procs["worker"].stop()
    client = redis.Redis.from_url(vlm_stack.redis_url)
    stuck = Heartbeat(client, "stuck-vlm-worker", 6, lambda: {"kind": "llm", "model": "tiny"})
    stuck.start()
    try:
        page = docgen.encode(docgen.english_page().image, "PNG")
        reply = requests.post(vlm_stack.base_url + "/v1/documents", data={"strategy": "vlm"},
                              files={"file": ("page.png", page)}, timeout=60)
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        wait_until(lambda: queued_generations(vlm_stack.redis_url) > 0, [procs["ocr-worker"], procs["api"]],
                   timeout_s=120)

        stopping = time.monotonic()
        procs["ocr-worker"].popen.terminate()
        try:
            procs["ocr-worker"].popen.wait(GRACE_S + 25)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the OCR worker was still running {GRACE_S + 25} s after SIGTERM (grace {GRACE_S} s)")
        took = time.monotonic() - stopping
        assert took >= GRACE_S - 0.5, f"stopped after {took:.1f} s: the page was not given its grace"
    finally:
        stuck.stop()

    # A fresh OCR worker and the VLM's worker: the handed-back page runs again at once and the job ends.
    for name, args in (("worker", ["--cpu"]), ("ocr-worker", ["--ocr"])):
        vlm_stack.procs.append(start_module(f"{name}-2", "workers.main", args, vlm_stack.env, vlm_stack.logdir))
    job = wait_for_job(vlm_stack, job_id, timeout_s=240)
    assert job["status"] == "succeeded", job
