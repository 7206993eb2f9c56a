"""Usage per API key: each key's tokens, requests, documents and pages in GET /v1/usage and /metrics, counted once
per job even when a worker dies mid-job; and quotas that refuse a key's new jobs with a 429 that says why."""

from __future__ import annotations

import datetime
import io
import json
import time

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from bench.reliability import Services, mid_stream
from devtools import docgen
from devtools.processes import private_stack
from maoocr.auth import digest, owner_id
from maoocr.config import AuthSettings, Quota, QuotaSettings, load_settings
from maoocr.store.keys import JOB_KEY, REPLAY_KEY
from maoocr.store.usage import LUA, seconds_to_utc_midnight, utc_today

KEY_A, KEY_B, ADMIN = "usage-key-a", "usage-key-b", "usage-admin-key"
ID_A, ID_B = owner_id(digest(KEY_A)), owner_id(digest(KEY_B))
TERMINAL = ("succeeded", "failed", "cancelled")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_usage_days_are_utc_calendar_days(redis_client):
    """The day a job is counted under comes from the Redis server's clock, computed in Lua: the same calendar day
    Python names, leap years and century rules included."""
    on_clock = redis_client.register_script(LUA.replace("tonumber(redis.call('TIME')[1])", "tonumber(ARGV[1])")
                                            + "\nreturn usage_day()")
    for days in [*range(0, 80_000, 97), 10_956, 11_016, 11_017, 47_540, 47_541]:  # around 2000-02-29, 2100-03-01
        moment = days * 86_400 + 86_399
        expected = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).date().isoformat()
        assert on_clock(keys=["maoocr:job:none"], args=[moment]) == expected, days
    assert redis_client.eval(LUA + "\nreturn usage_day()", 0) == utc_today().isoformat()


# -- two keys and an admin on a stack of their own ----------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(tmp_path_factory, tiny_model):
    with private_stack(tmp_path_factory.mktemp("usage-stack"), str(tiny_model), ocr_worker=True,
                       env={"MAOOCR_API_KEYS": f"{KEY_A},{KEY_B}", "MAOOCR_AUTH__ADMIN_KEYS": f"[{ADMIN}]"}) as stack:
        yield stack


def usage(stack, key: str, **params) -> requests.Response:
    return requests.get(stack.base_url + "/v1/usage", headers=auth(key), params=params, timeout=30)


def generate(stack, key: str, max_tokens: int) -> dict:
    reply = requests.post(stack.base_url + "/api/generate", headers=auth(key), timeout=120, json={
        "prompt": "count the usage of this key", "max_tokens": max_tokens, "ignore_eos": True, "wait": True})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_each_key_sees_its_own_usage_and_an_admin_sees_every_key(keyed):
    a_jobs = [generate(keyed, KEY_A, 5), generate(keyed, KEY_A, 7)]
    chat = requests.post(keyed.base_url + "/v1/chat/completions", headers=auth(KEY_B), timeout=120, json={
        "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "ignore_eos": True})
    assert chat.status_code == 200, chat.text
    page = docgen.encode(docgen.numbered_pages(1)[0].image, "PNG")
    upload = requests.post(keyed.base_url + "/v1/documents", headers=auth(KEY_B), timeout=60,
                           files={"file": ("page.png", page)}, data={"strategy": "fast"})
    assert upload.status_code == 202, upload.text
    document = requests.get(f"{keyed.base_url}/v1/jobs/{upload.json()['job_id']}", headers=auth(KEY_B), timeout=10)
    deadline = time.monotonic() + 240
    while document.json()["status"] not in TERMINAL:
        assert time.monotonic() < deadline, document.text
        time.sleep(0.3)
        document = requests.get(document.url, headers=auth(KEY_B), timeout=10)
    assert document.json()["status"] == "succeeded", document.text

    model = a_jobs[0]["model"]
    today = utc_today().isoformat()
    a_used = {"prompt_tokens": sum(j["usage"]["prompt_tokens"] for j in a_jobs),
              "completion_tokens": sum(j["usage"]["completion_tokens"] for j in a_jobs), "requests": 2}
    assert a_used["completion_tokens"] == 12 and a_used["prompt_tokens"] > 0
    b_used = {"prompt_tokens": chat.json()["usage"]["prompt_tokens"], "completion_tokens": 4, "requests": 1}

    own = usage(keyed, KEY_A)
    assert own.status_code == 200, own.text
    report = own.json()
    assert report["object"] == "usage" and report["end"] == today
    assert report["start"] == (utc_today() - datetime.timedelta(days=29)).isoformat()
    assert [o["owner"] for o in report["owners"]] == [ID_A]
    a = report["owners"][0]
    assert a["models"] == {model: a_used}
    assert a["totals"] == {**a_used, "documents": 0, "pages": 0}
    assert a["days"] == [{"day": today, "totals": a["totals"], "models": a["models"]}]

    b = usage(keyed, KEY_B).json()["owners"]
    assert [o["owner"] for o in b] == [ID_B]
    assert b[0]["totals"] == {**b_used, "documents": 1, "pages": 1} and b[0]["models"] == {model: b_used}

    forbidden = usage(keyed, KEY_A, owner=ID_B)
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]["message"]
    assert usage(keyed, KEY_A, owner=ID_A).json() == report

    everyone = usage(keyed, ADMIN).json()["owners"]
    assert {o["owner"]: o["totals"] for o in everyone} == {ID_A: a["totals"], ID_B: b[0]["totals"]}
    assert usage(keyed, ADMIN, owner=ID_B).json()["owners"] == b
    assert usage(keyed, ADMIN, start="2001-01-01", end="2001-01-31").json()["owners"] == []

    for params, says in (({"start": "2024-13-01"}, "YYYY-MM-DD"), ({"end": "yesterday"}, "YYYY-MM-DD"),
                         ({"start": "2024-03-02", "end": "2024-03-01"}, "after"),
                         ({"start": "2023-01-01", "end": "2024-01-02"}, "366")):
        bad = usage(keyed, KEY_A, **params)
        assert bad.status_code == 400 and says in bad.json()["error"]["message"], bad.text

    metrics = requests.get(keyed.base_url + "/metrics", headers=auth(KEY_A), timeout=30)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics.text) for s in family.samples}
    for owner, used in ((ID_A, a_used), (ID_B, b_used)):
        for kind in ("prompt", "completion"):
            labels = (("kind", kind), ("model", model), ("owner", owner))
            assert samples[("maoocr_usage_tokens_total", labels)] == used[f"{kind}_tokens"]
        assert samples[("maoocr_usage_requests_total", (("model", model), ("owner", owner)))] == used["requests"]
    assert samples[("maoocr_usage_documents_total", (("owner", ID_B),))] == 1
    assert samples[("maoocr_usage_pages_total", (("owner", ID_B),))] == 1


def test_quotas_refuse_new_jobs_with_a_429_that_names_the_limit(keyed):
    """On an app of this test's own settings, over the stack's Redis (its workers run the jobs): one key with a
    daily token quota, one that may have one job in flight."""
    settings = load_settings(keyed.config, env={})
    thrifty, single = "quota-key-tokens", "quota-key-in-flight"
    settings = settings.model_copy(update={
        "auth": AuthSettings(api_keys=[thrifty, single]),
        "quotas": QuotaSettings(keys={owner_id(digest(thrifty)): Quota(tokens_per_day=10),
                                      owner_id(digest(single)): Quota(jobs_in_flight=1)})})
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    app = create_app(settings)
    try:
        http = app.test_client()

        def submit(key: str, max_tokens: int, wait: bool):
            return http.post("/api/generate", headers=auth(key), json={
                "prompt": "spend the quota of this key", "max_tokens": max_tokens, "ignore_eos": True, "wait": wait})

        def refused(reply, limit: str) -> int:
            assert reply.status_code == 429, reply.get_data(as_text=True)
            error = reply.json["error"]
            assert error["code"] == "quota_exceeded" and limit in error["message"], error
            return int(reply.headers["Retry-After"])

        # The daily quota: the job that crosses it runs; every new job after it is refused until midnight UTC.
        first = submit(thrifty, 12, wait=True)
        assert first.status_code == 200 and first.json["usage"]["completion_tokens"] == 12
        retry_after = refused(submit(thrifty, 2, wait=False), "tokens_per_day=10")
        assert abs(retry_after - seconds_to_utc_midnight()) <= 5
        refused(http.post("/v1/chat/completions", headers=auth(thrifty),
                          json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}), "tokens_per_day")
        page = docgen.encode(docgen.numbered_pages(1)[0].image, "PNG")
        refused(http.post("/v1/documents", headers=auth(thrifty), data={"file": (io.BytesIO(page), "p.png")}),
                "tokens_per_day")

        # Jobs in flight: the second is refused while the first runs, and accepted once it has ended.
        long = submit(single, 1000, wait=False)
        assert long.status_code == 202, long.get_data(as_text=True)
        long_id = long.json["job_id"]
        assert refused(submit(single, 2, wait=False), "jobs_in_flight=1") <= 5
        wait_for(lambda: mid_stream(client, [long_id]) == 1, 120, "the long job never streamed")
        assert http.delete(f"/v1/jobs/{long_id}", headers=auth(single)).json["status"] == "cancelled"
        small = [submit(single, 3, wait=True), submit(single, 4, wait=True)]
        assert [r.status_code for r in small] == [200, 200]

        # The cancelled job counts the request and the tokens it had made when the cancel reached its worker.
        def last_chunk() -> dict:
            return json.loads(client.lindex(REPLAY_KEY.format(long_id), -1))

        wait_for(lambda: last_chunk()["finished"], 60, "the cancelled job's stream never ended")
        cancelled_end = last_chunk()
        assert cancelled_end["finish_reason"] == "cancelled" and cancelled_end["usage"]["completion_tokens"] > 0
        used = http.get("/v1/usage", headers=auth(single)).json["owners"][0]["totals"]
        assert used["requests"] == 3
        assert used["completion_tokens"] == cancelled_end["usage"]["completion_tokens"] + 3 + 4
        assert used["prompt_tokens"] == (cancelled_end["usage"]["prompt_tokens"]
                                         + sum(r.json["usage"]["prompt_tokens"] for r in small))
        assert client.zcard(f"maoocr:inflight:{owner_id(digest(single))}") == 0
    finally:
        app.extensions["maoocr.batches"].stop()
        client.close()


def test_a_job_run_again_after_its_worker_was_killed_is_counted_once(tmp_path, own_redis, tiny_model):
    """Auth off: the job is anonymous's, and any caller sees everyone's usage."""
    services = Services(tmp_path, own_redis, str(tiny_model), {"redelivery_timeout_s": 4})
    services.env["MAOOCR_TTLS__HEARTBEAT_S"] = "3"
    try:
        services.start_workers(("llm",))
        reply = requests.post(services.base_url + "/api/generate", timeout=30, json={
            "prompt": "a story told twice", "max_tokens": 1000, "ignore_eos": True, "seed": 3})
        job_id = reply.json()["job_id"]
        wait_for(lambda: mid_stream(services.redis, [job_id]) == 1, 120, "the job never started streaming")
        services.kill_workers()
        services.start_workers(("llm",))
        wait_for(lambda: services.redis.hget(JOB_KEY.format(job_id), "status") in TERMINAL, 240,
                 "the job never finished after the kill")
        job = requests.get(f"{services.base_url}/v1/jobs/{job_id}", timeout=10).json()
        assert job["status"] == "succeeded" and job["attempts"] == 2, job
        owners = requests.get(services.base_url + "/v1/usage", timeout=10).json()["owners"]
        assert [o["owner"] for o in owners] == ["anonymous"]
        used = job["result"]["usage"]
        assert used["completion_tokens"] == 1000
        assert owners[0]["totals"] == {"prompt_tokens": used["prompt_tokens"], "completion_tokens": 1000,
                                       "requests": 1, "documents": 0, "pages": 0}
    finally:
        services.stop()
