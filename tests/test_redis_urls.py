"""Redis URLs with TLS (rediss://) and passwords work for every connection MaoOCR makes, and Celery speaks JSON
only. (A whole stack on a password-protected Redis runs in test_auth.py and test_redis_outage.py.)"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
import redis

from devtools.processes import settings_for, start_redis
from maoocr.embedded import answers, free_port
from maoocr.protocol.generation import StreamChunk
from maoocr.store.client import connect
from maoocr.store.jobs import JobStore
from maoocr.store.keys import JOB_KEY
from maoocr.store.streams import StreamStore
from workers.celery_app import create_celery_app

PASSWORD = "tls-pw"


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    port = free_port()
    # The plain port answers the readiness probe of start_redis; clients below use only the TLS port.
    proc, _ = start_redis(directory, password=PASSWORD, extra=[
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"])
    yield f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    proc.stop()


def test_tls_and_password_reach_the_job_store_streams_and_listeners(tls_url):
    client = connect(tls_url)
    assert client.ping() and answers(tls_url)  # `maoocr up` probes MAOOCR_REDIS_URL with answers()
    jobs, streams = JobStore(client, 60), StreamStore(client, 60)
    record = jobs.create("generation", model="m")
    streams.append([StreamChunk(job_id=record.id, finished=True, event="end")])
    assert [c.finished for c in streams.follow(record.id, timeout_s=5)] == [True]  # pub/sub over TLS
    assert jobs.transition(record.id, ("queued",), "succeeded", result={"ok": 1})[0]
    assert jobs.wait(record.id, 5).status == "succeeded"  # the job-done listener subscribed over TLS
    # The bytes client (document uploads) and the workers' patient client take the same URL.
    assert connect(tls_url, decode=False, patient=True).hget(JOB_KEY.format(record.id), "status") == b"succeeded"
    wrong = tls_url.replace(PASSWORD, "wrong")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(wrong).ping()


def test_celery_broker_and_result_backend_over_tls(tls_url, tmp_path):
    app = create_celery_app(settings_for(tls_url, tmp_path))
    queue = f"maoocr.test.{uuid.uuid4().hex}"
    app.send_task("maoocr.nothing", args=[{"x": 1}], queue=queue, ignore_result=True)
    assert connect(tls_url).llen(queue) == 1  # the broker connection published over TLS
    task_id = uuid.uuid4().hex
    app.backend.store_result(task_id, {"pages": 1}, "SUCCESS")
    assert app.AsyncResult(task_id).get(timeout=5) == {"pages": 1}


def test_celery_accepts_json_only(tmp_path):
    app = create_celery_app(settings_for("redis://127.0.0.1:6379/0", tmp_path))
    assert app.conf.accept_content == ["json"] and app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json" and app.conf.result_accept_content in (None, ["json"])
    assert app.conf.broker_connection_max_retries is None and app.conf.broker_connection_retry_on_startup


def test_the_code_never_imports_pickle():
    found = subprocess.run(["grep", "-rlE", r"^\s*(import|from) (c?pickle|dill|cloudpickle)\b", "maoocr", "api",
                            "workers", "bench", "devtools"], capture_output=True, text=True)
    assert found.stdout == ""
