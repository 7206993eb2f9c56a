"""Webhooks on the real stack: a local HTTP receiver gets one signed POST per job end, a retry after a 500, and a
delivery given up after the configured attempts is recorded; targets on private networks are refused by default."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from devtools import docgen
from devtools.processes import wait_for_job
from maoocr.config import WebhookSettings
from maoocr.errors import InvalidRequest
from maoocr.webhooks.signing import SIGNATURE_HEADER, sign, verify
from maoocr.webhooks.targets import check_webhook_url, webhook_for_job
from tests.conftest import WEBHOOKS_ENV

SECRET = WEBHOOKS_ENV["MAOOCR_WEBHOOKS__SECRET"]


class Receiver:
    """An HTTP server on loopback that answers each POST with the next of `statuses` (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout_s: float = 60) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} of {count} webhooks arrived"
        return self.received

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver_factory():
    made: list[Receiver] = []
    yield lambda statuses: made.append(Receiver(statuses)) or made[-1]
    for receiver in made:
        receiver.close()


def webhook_state(stack, job_id: str, until: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).json()
        if record["webhook_status"] == until:
            return record
        time.sleep(0.1)
    raise AssertionError(f"webhook_status stayed {record['webhook_status']!r}: {record}")


def test_generation_webhook_is_signed_and_retried_after_a_500(stack, receiver_factory):
    receiver = receiver_factory([500, 200])
    reply = requests.post(stack.base_url + "/api/generate", timeout=30, json={
        "prompt": "hello", "max_tokens": 3, "ignore_eos": True, "webhook_url": receiver.url})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).json()["webhook_status"] == "pending"
    (first_headers, first_body), (headers, body) = receiver.wait_for(2)
    for attempt, (hdrs, raw) in enumerate([(first_headers, first_body), (headers, body)], start=1):
        assert verify(SECRET, hdrs[SIGNATURE_HEADER], raw), hdrs
        assert hdrs["X-MaoOCR-Delivery"] == job_id and hdrs["X-MaoOCR-Attempt"] == str(attempt)
    sent = json.loads(body)
    assert sent["event"] == "job.succeeded" == headers["X-MaoOCR-Event"]
    assert sent["job"]["id"] == job_id and sent["job"]["status"] == "succeeded"
    assert sent["job"]["result"]["usage"]["completion_tokens"] == 3
    # A changed body, another secret or an old timestamp does not verify.
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body.replace(b"succeeded", b"failed"))
    assert not verify("another-secret", headers[SIGNATURE_HEADER], body)
    assert not verify(SECRET, sign(SECRET, body, timestamp=int(time.time()) - 3600), body)
    record = webhook_state(stack, job_id, "delivered")
    assert record["webhook_attempts"] == 2 and record["webhook_error"] is None
    time.sleep(1.0)
    assert len(receiver.received) == 2  # delivered: never sent again


def test_document_webhook_after_ocr_and_given_up_after_max_attempts(stack, receiver_factory):
    receiver = receiver_factory([503])
    page = docgen.english_page()
    reply = requests.post(stack.base_url + "/v1/documents", timeout=60,
                          files={"file": ("scan.png", docgen.encode(page.image, "PNG"))},
                          data={"webhook_url": receiver.url})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert wait_for_job(stack, job_id)["status"] == "succeeded"
    attempts = int(WEBHOOKS_ENV["MAOOCR_WEBHOOKS__MAX_ATTEMPTS"])
    record = webhook_state(stack, job_id, "failed")
    assert record["webhook_attempts"] == attempts and "HTTP 503" in record["webhook_error"]
    received = receiver.wait_for(attempts)
    assert len(received) == attempts
    assert json.loads(received[0][1])["job"]["result"]["pages"]  # the OCR result travels with the record


def test_a_bad_webhook_url_is_refused_before_the_job_is_queued(stack):
    for url, words in (("ftp://example.com/x", "http:// or https://"), ("http://user:pw@example.com/", "credentials")):
        reply = requests.post(stack.base_url + "/api/generate", timeout=30,
                              json={"prompt": "hello", "max_tokens": 2, "webhook_url": url})
        assert reply.status_code == 400 and words in reply.json()["error"]["message"], reply.text


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost/x", "http://10.1.2.3/x",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://192.168.0.5/x"])
def test_private_targets_are_refused_unless_allowed(url):
    with pytest.raises(InvalidRequest, match="non-public"):
        check_webhook_url(url)
    check_webhook_url(url, allow_private=True)


def test_public_address_passes():
    check_webhook_url("https://93.184.216.34/hooks/maoocr")


def test_key_default_and_webhooks_off():
    settings = WebhookSettings(secret="s", allow_private=True, key_defaults={"abc": "http://127.0.0.1:9/hook"})
    assert webhook_for_job(settings, None, "abc") == "http://127.0.0.1:9/hook"
    assert webhook_for_job(settings, "http://127.0.0.1:1/own", "abc") == "http://127.0.0.1:1/own"
    assert webhook_for_job(settings, None, "other") is None
    with pytest.raises(InvalidRequest, match="no webhooks.secret"):
        webhook_for_job(WebhookSettings(), "https://93.184.216.34/h", None)
