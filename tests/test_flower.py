"""`maoocr flower` against the running stack: an operator opens Flower (behind basic auth) and, through Flower's
own HTTP API, finds both workers and the tasks that ran after it started; when Flower stops, task events go
back off on the workers (the configured default)."""

from __future__ import annotations

import time

import requests

from devtools import docgen
from devtools.processes import start_module, wait_http
from maoocr.embedded import free_port
from maoocr.store.heartbeats import live_workers
from workers.celery_app import create_celery_app

AUTH = ("ops", "s3cret-flower")


def celery_names(redis_client) -> dict[str, str]:
    """kind → the worker's Celery hostname (`<name>@<host>`, as `maoocr worker` names it)."""
    return {w["kind"]: f"{w['name']}@{w['hostname']}" for w in live_workers(redis_client)}


def wait_for(fetch, check, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while True:
        data = fetch()
        if check(data):
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.5)


def test_flower_sees_workers_and_finished_tasks(stack, stack_settings, redis_client):
    port = free_port()
    flower = start_module("flower", "workers.flower", ["--port", str(port), "--basic-auth", ":".join(AUTH)],
                          stack.env, stack.logdir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthcheck", [flower], timeout_s=60)
        assert requests.get(base + "/api/workers", timeout=10).status_code == 401  # basic auth is on
        assert requests.get(base + "/api/workers", auth=("ops", "wrong"), timeout=10).status_code == 401

        names = celery_names(redis_client)
        # Flower asks the workers over the broker; its answer comes after our enable_events broadcast, which
        # the workers handle in order: from here on, their task events reach Flower.
        workers = wait_for(lambda: requests.get(base + "/api/workers?refresh=1", auth=AUTH, timeout=30).json(),
                           lambda data: {names["llm"], names["ocr"]} <= set(data))
        assert workers[names["llm"]]["active_queues"][0]["name"] == "maoocr.llm.tiny"
        assert workers[names["ocr"]]["active_queues"][0]["name"] == "maoocr.ocr"

        generated = requests.post(stack.base_url + "/api/generate", timeout=120,
                                  json={"prompt": "name three flowers please", "max_tokens": 4, "wait": True})
        assert generated.status_code == 200, generated.text
        gen_id = generated.json()["job_id"]
        pdf = docgen.pdf_bytes(docgen.numbered_pages(2))
        upload = requests.post(stack.base_url + "/v1/documents", files={"file": ("d.pdf", pdf)}, timeout=60)
        assert upload.status_code == 202, upload.text
        ocr_id = upload.json()["job_id"]

        def finished(tasks: dict) -> bool:
            pages = [t for t in tasks.values() if t["name"] == "maoocr.ocr.page" and t["state"] == "SUCCESS"]
            return (tasks.get(gen_id, {}).get("state") == "SUCCESS" and len(pages) >= 2
                    and any(t["name"] == "maoocr.ocr.assemble" and t["state"] == "SUCCESS" for t in tasks.values()))

        tasks = wait_for(lambda: requests.get(base + "/api/tasks", auth=AUTH, timeout=10).json(), finished, 240)
        # The Celery task id of a job is its job id.
        assert tasks[gen_id]["name"] == "maoocr.generate" and tasks[gen_id]["worker"] == names["llm"]
        assert tasks[ocr_id]["name"] == "maoocr.ocr.split" and tasks[ocr_id]["state"] == "SUCCESS"
        assert tasks[ocr_id]["worker"] == names["ocr"]
    finally:
        flower.stop()
    assert flower.popen.returncode == 0, flower.tail()

    # Events are back off once Flower is gone: asked to switch them off again, every worker says they are.
    control = create_celery_app(stack_settings).control
    replies = control.broadcast("disable_events", reply=True, timeout=5)
    answers = {name: answer for reply in replies for name, answer in reply.items()}
    assert set(names.values()) <= set(answers), answers
    assert all(a == {"ok": "task events already disabled"} for a in answers.values()), answers
