"""A page waiting on the VLM holds no OCR process: its model steps run on the model-steps worker's threads.

An OCR worker of one process, a VLM worker frozen mid-flight (SIGSTOP: alive by its heartbeat, answering nothing):
a document read by PP-OCR goes through while a 'vlm' page waits, and the waiting page then falls back to PP-OCR
'accurate' when its time limit passes, saying why. A model-steps worker killed with kill -9 while its pages wait
loses none of them: a fresh one takes them up, waits on the VLM jobs already sent, and each page comes back once."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import psutil
import pytest
import redis
import requests

from devtools import docgen
from devtools.processes import private_stack, start_module, wait_for_job, wait_until
from maoocr.store.keys import JOB_KEY

VLM_TIMEOUT_S = 30
REDELIVERY_S = VLM_TIMEOUT_S + 15  # above a page's longest wait on models, as the config requires


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from maoocr.engines.demo_vlm import build_demo_vlm

    docgen.require_fonts()
    path = build_demo_vlm(tmp_path_factory.mktemp("tiny-vlm"))
    env = {"MAOOCR_OCR__VLM_MODEL": "tiny", "MAOOCR_OCR__VLM_MAX_TOKENS": "16", "MAOOCR_OCR__CONCURRENCY": "1",
           "MAOOCR_OCR__VLM_TIMEOUT_S": str(VLM_TIMEOUT_S), "MAOOCR_OCR__ASSIST_TIMEOUT_S": "5",
           "MAOOCR_TTLS__HEARTBEAT_S": "300", "MAOOCR_WORKER__REDELIVERY_TIMEOUT_S": str(REDELIVERY_S)}
    with private_stack(tmp_path_factory.mktemp("handoff"), str(path), ocr_worker=True, env=env,
                       model={"model_type": "multimodal", "max_model_len": 2048, "max_num_seqs": 8}) as running:
        yield running


@contextlib.contextmanager
def frozen(proc):
    """The process and its children (the engine core) stopped: its heartbeat stays, its jobs wait."""
    tree = [psutil.Process(proc.popen.pid), *psutil.Process(proc.popen.pid).children(recursive=True)]
    for p in tree:
        p.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for p in tree:
            p.send_signal(signal.SIGCONT)


def submit(stack, data: bytes, name: str, **form) -> str:
    reply = requests.post(stack.base_url + "/v1/documents", files={"file": (name, data)}, data=form, timeout=60)
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def generation_jobs(stack) -> list[dict]:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    jobs = [client.hgetall(key) for key in client.scan_iter(JOB_KEY.format("*")) if key.count(":") == 2]
    return [job for job in jobs if job.get("kind") == "generation"]


def status(stack, job_id: str) -> str:
    return requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).json()["status"]


def proc(stack, name: str):
    return next(p for p in stack.procs if p.name == name)


def test_ppocr_pages_flow_while_a_vlm_page_waits_and_it_falls_back_at_its_time_limit(stack):
    pages = docgen.numbered_pages(2)
    before = len(generation_jobs(stack))
    with frozen(proc(stack, "worker")):
        waiting = submit(stack, docgen.encode(pages[0].image, "PNG"), "a.png", strategy="vlm")
        wait_until(lambda: len(generation_jobs(stack)) > before, [])  # handed off: its VLM job is queued
        started = time.monotonic()
        flowing = wait_for_job(stack, submit(stack, docgen.encode(pages[1].image, "PNG"), "b.png", strategy="fast"))
        assert flowing["status"] == "succeeded" and "page two" in flowing["result"]["text"]
        # The only OCR process was free for it: the 'vlm' page is still waiting on the frozen VLM.
        assert status(stack, waiting) == "running" and time.monotonic() - started < VLM_TIMEOUT_S
        job = wait_for_job(stack, waiting, timeout_s=VLM_TIMEOUT_S + 120)
    page = job["result"]["pages"][0]
    assert job["status"] == "succeeded" and page["strategy"] == "accurate", page
    assert "VLM OCR failed (timeout: no answer from model 'tiny'" in page["strategy_reason"], page["strategy_reason"]
    assert page["engine"].startswith("rapidocr") and "page one" in page["text"]
    # The VLM job nobody waits for any more was cancelled, not left to run.
    assert any(j.get("status") == "cancelled" for j in generation_jobs(stack)), "the VLM job was not cancelled"


def test_a_model_steps_worker_killed_while_its_pages_wait_loses_none(stack):
    pdf = docgen.pdf_bytes(docgen.numbered_pages(3))
    models = proc(stack, "ocr-models-worker")
    before = len(generation_jobs(stack))
    with frozen(proc(stack, "worker")):
        job_id = submit(stack, pdf, "three.pdf", strategy="vlm")
        wait_until(lambda: sum(1 for j in generation_jobs(stack) if j.get("status") in ("queued", "running")) >= 3,
                   [])
        models.popen.send_signal(signal.SIGKILL)
        models.popen.wait()
        assert status(stack, job_id) == "running"
        restarted = start_module("ocr-models-worker-2", "workers.main", ["--ocr-models"], stack.env, stack.logdir)
        stack.procs.append(restarted)
    job = wait_for_job(stack, job_id, timeout_s=VLM_TIMEOUT_S * 3 + 240)
    assert job["status"] == "succeeded", job
    pages = job["result"]["pages"]
    assert [p["page"] for p in pages] == [1, 2, 3] and job["result"]["stats"]["pages"] == 3
    for number, page in zip(("one", "two", "three"), pages):
        # The tiny VLM's answer is cut at max_tokens, so PP-OCR reads each page, and says why.
        assert page["strategy"] == "accurate" and "VLM OCR failed" in page["strategy_reason"], page
        assert f"page {number}" in page["text"]
    done = json.loads(requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).text)["progress"]
    assert done == {"done": 3, "total": 3}
    # The OCR process sent each page's VLM job; the fresh worker waited on those, it did not ask again.
    assert len(generation_jobs(stack)) - before == 3
