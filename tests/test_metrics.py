"""Prometheus metrics, as an operator scrapes them: the API's /metrics (global values read from Redis) and each
worker's exporter (its own counters and histograms; the OCR worker's summed over its prefork children).

Scrape, run real jobs through the real stack, scrape again: the values moved by what the jobs did.
"""

from __future__ import annotations

import time
from typing import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools import docgen
from devtools.processes import wait_for_job
from maoocr.store.heartbeats import live_workers

Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    reply = requests.get(url, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain")
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(reply.text)
            for s in family.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == want for k, want in labels.items()))


def eventually(check: Callable[[], bool], timeout_s: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s: {what}"
        time.sleep(0.2)


def worker_url(redis_client, kind: str) -> str:
    workers = [w for w in live_workers(redis_client) if w.get("kind") == kind]
    assert workers and workers[0].get("metrics_port"), f"no {kind} worker announces a metrics port: {workers}"
    return f"http://127.0.0.1:{workers[0]['metrics_port']}/metrics"




def test_metrics_move_after_generation_and_ocr_jobs(stack, redis_client):
    api_url = stack.base_url + "/metrics"
    llm_url, ocr_url = worker_url(redis_client, "llm"), worker_url(redis_client, "ocr")
    api0, llm0, ocr0 = scrape(api_url), scrape(llm_url), scrape(ocr_url)
    assert value(api0, "maoocr_workers", kind="llm") >= 1 and value(api0, "maoocr_workers", kind="ocr") >= 1
    assert any(n == "maoocr_queue_depth" and lab["queue"] == "maoocr.ocr" for n, lab, _ in api0)

    reply = requests.post(stack.base_url + "/api/generate", timeout=120,
                          json={"prompt": "count to ten", "max_tokens": 12, "ignore_eos": True, "wait": True})
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    assert usage["completion_tokens"] == 12
    pdf = docgen.pdf_bytes(docgen.numbered_pages(2))
    upload = requests.post(stack.base_url + "/v1/documents", files={"file": ("two.pdf", pdf)}, timeout=60)
    assert upload.status_code == 202, upload.text
    assert wait_for_job(stack, upload.json()["job_id"])["status"] == "succeeded"

    def moved() -> bool:
        api, llm, ocr = scrape(api_url), scrape(llm_url), scrape(ocr_url)
        return (value(api, "maoocr_jobs_finished_total", kind="generation", status="succeeded")
                >= value(api0, "maoocr_jobs_finished_total", kind="generation", status="succeeded") + 1
                and value(api, "maoocr_jobs_finished_total", kind="ocr", status="succeeded")
                >= value(api0, "maoocr_jobs_finished_total", kind="ocr", status="succeeded") + 1
                and value(llm, "maoocr_job_latency_seconds_count", kind="generation", status="succeeded")
                >= value(llm0, "maoocr_job_latency_seconds_count", kind="generation", status="succeeded") + 1
                and value(ocr, "maoocr_job_latency_seconds_count", kind="ocr", status="succeeded")
                >= value(ocr0, "maoocr_job_latency_seconds_count", kind="ocr", status="succeeded") + 1)

    eventually(moved, what="job counters and latency histograms after one generation and one OCR job")
    llm1, ocr1 = scrape(llm_url), scrape(ocr_url)
    # Per-process counters from the workers: exactly what the jobs did (nothing else ran in between on them).
    assert (value(llm1, "maoocr_generated_tokens_total", model="tiny")
            - value(llm0, "maoocr_generated_tokens_total", model="tiny")) >= usage["completion_tokens"]
    assert (value(llm1, "maoocr_prompt_tokens_total", model="tiny")
            - value(llm0, "maoocr_prompt_tokens_total", model="tiny")) >= usage["prompt_tokens"] > 0
    # Pages are counted in the prefork children and summed by the worker's exporter.
    assert (value(ocr1, "maoocr_pages_processed_total", status="succeeded")
            - value(ocr0, "maoocr_pages_processed_total", status="succeeded")) >= 2
    assert value(ocr1, "maoocr_page_seconds_count") - value(ocr0, "maoocr_page_seconds_count") >= 2
    assert (value(llm1, "maoocr_job_queue_wait_seconds_count", kind="generation")
            > value(llm0, "maoocr_job_queue_wait_seconds_count", kind="generation"))
    # A latency is a real duration: the histogram's sum grew by more than nothing.
    assert (value(llm1, "maoocr_job_latency_seconds_sum", kind="generation")
            > value(llm0, "maoocr_job_latency_seconds_sum", kind="generation"))


def test_queue_depth_and_running_jobs_while_pages_wait(stack, stack_settings):
    """A 6-page document fans out into 6 page tasks on an OCR worker with one process per core (2 here): while
    it runs, /metrics shows the job running and pages waiting in the OCR queue; afterwards both are back down."""
    api_url = stack.base_url + "/metrics"
    queue = stack_settings.queues.ocr
    before = scrape(api_url)
    assert value(before, "maoocr_queue_depth", queue=queue) == 0
    pdf = docgen.pdf_bytes(docgen.numbered_pages(6))
    reply = requests.post(stack.base_url + "/v1/documents", files={"file": ("six.pdf", pdf)}, timeout=60)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    seen_depth, seen_running = 0.0, 0.0
    deadline = time.monotonic() + 240
    while requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).json()["status"] in ("queued", "running"):
        samples = scrape(api_url)
        seen_depth = max(seen_depth, value(samples, "maoocr_queue_depth", queue=queue))
        seen_running = max(seen_running, value(samples, "maoocr_jobs", kind="ocr", status="running"))
        assert time.monotonic() < deadline
    assert wait_for_job(stack, job_id)["status"] == "succeeded"
    assert seen_running >= value(before, "maoocr_jobs", kind="ocr", status="running") + 1
    assert seen_depth >= 1, "pages never waited in the OCR queue"
    after = scrape(api_url)
    assert value(after, "maoocr_queue_depth", queue=queue) == 0
    assert value(after, "maoocr_jobs", kind="ocr", status="running") == value(before, "maoocr_jobs", kind="ocr",
                                                                               status="running")


def test_engine_requests_show_a_running_generation(stack, redis_client):
    llm_url = worker_url(redis_client, "llm")
    assert any(n == "maoocr_engine_requests" and lab["state"] == "waiting" for n, lab, _ in scrape(llm_url))
    # A new long generation every half second while waiting, so the engine is busy whenever a heartbeat is taken
    # however fast the machine (a fixed handful of jobs could all end between two heartbeats).
    job_ids: list[str] = []
    last_submit = [0.0]

    def busy(check: Callable[[], bool]) -> Callable[[], bool]:
        def submit_then_check() -> bool:
            if not job_ids or time.monotonic() - last_submit[0] >= 0.5:
                reply = requests.post(stack.base_url + "/api/generate", timeout=30, json={
                    "prompt": "write a long story about the sea", "max_tokens": 900, "ignore_eos": True})
                assert reply.status_code == 202, reply.text
                job_ids.append(reply.json()["job_id"])
                last_submit[0] = time.monotonic()
            return check()
        return submit_then_check

    try:
        eventually(busy(lambda: value(scrape(llm_url), "maoocr_engine_requests", model="tiny", state="running") >= 1),
                   60, "the worker's engine shows the generation running")
        # The API's copy comes from the worker's heartbeat (every ttls.heartbeat_s / 3 = 2 s here).
        eventually(busy(lambda: value(scrape(stack.base_url + "/metrics"), "maoocr_worker_engine_requests",
                                      model="tiny", state="running") >= 1), 30, "the heartbeat carries the load")
    finally:
        for job_id in job_ids:
            requests.delete(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10)
    eventually(lambda: value(scrape(llm_url), "maoocr_engine_requests", model="tiny", state="running") == 0, 60,
               "the cancelled generations leave the engine")
