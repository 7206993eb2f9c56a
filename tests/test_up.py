"""`maoocr up`, the embedded default: private Redis, the workers and the API from one command; the other commands
find it; Ctrl-C or SIGTERM stops it in order."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import redis
import requests

from devtools import docgen
from devtools.processes import ROOT, ctrl_c_reaches_it
from maoocr.config import load_settings
from maoocr.embedded import free_port, models_to_serve
from maoocr.store.keys import WORKER_KEY
from maoocr.up_record import UpRecord, pid_alive, read_record


def up_env(tmp_path, data_dir) -> dict[str, str]:
    """No MAOOCR_* from the test session: `up` starts its own Redis and the demo model is built into data_dir."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  demo:\n    model_path: null\n    max_model_len: 512\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOOCR_")}
    env.update(MAOOCR_MODELS_FILE=str(models), MAOOCR_DATA_DIR=str(data_dir), TMPDIR=str(tmp_path),
               PYTHONUNBUFFERED="1")
    return env


def start_up(env, port: int, log_path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "maoocr.cli", "up", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, preexec_fn=ctrl_c_reaches_it)
    deadline = time.monotonic() + 300
    while "MaoOCR is up" not in log_path.read_text():
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.25)
    return proc


def maoocr(env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maoocr.cli", *args], cwd=ROOT, env=env, capture_output=True, check=False,
                          text=True, timeout=timeout)


def after_stop(log_path) -> str:
    return log_path.read_text().split("stopping MaoOCR", 1)[1]


def test_up_runs_everything_every_command_finds_it_and_ctrl_c_stops_it(tmp_path, tiny_model):
    port = free_port()
    data_dir = tmp_path / "data"
    env = up_env(tmp_path, data_dir)
    log_path = tmp_path / "up.log"
    proc = start_up(env, port, log_path)
    try:
        # The banner and readiness agree: both kinds of worker are up when it says so.
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        out = log_path.read_text()
        assert "RANDOM demo model" in out and "meaningless" in out
        redis_url = re.search(r"private server at (\S+)", out).group(1)
        assert read_record(data_dir) == UpRecord(pid=proc.pid, redis_url=redis_url,
                                                 api_url=f"http://127.0.0.1:{port}")
        reply = requests.post(f"http://127.0.0.1:{port}/api/generate", timeout=120,
                              json={"prompt": "hi", "max_tokens": 8, "wait": True, "ignore_eos": True})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 8

        # Neither --api nor MAOOCR_API_URL / MAOOCR_REDIS_URL: the commands find `up` through its data dir.
        page = tmp_path / "page.png"
        docgen.numbered_pages(1)[0].image.save(page)
        ocr = maoocr(env, "submit", str(page), "--wait", timeout=240)
        assert ocr.returncode == 0 and "page one" in ocr.stdout, ocr.stderr
        job_id = maoocr(env, "submit", str(page)).stdout.strip()
        status = maoocr(env, "status", job_id)
        assert status.returncode == 0 and json.loads(status.stdout)["id"] == job_id, status.stderr
        ping = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.celery_app", "inspect", "ping"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert ping.returncode == 0 and "2 nodes online" in ping.stdout, ping.stdout + ping.stderr
        assert_flower_finds_the_workers(env, tmp_path)

        # A second `up` here, or one on the taken port, says why in one line and starts nothing.
        again = maoocr(env, "up", "--port", str(free_port()))
        assert again.returncode == 2 and f"already running (pid {proc.pid}" in again.stderr, again.stderr
        taken = maoocr(up_env(tmp_path, tmp_path / "other"), "up", "--port", str(port))
        assert taken.returncode == 2 and taken.stderr.count("\n") == 1 and f"port {port}" in taken.stderr
        assert not (tmp_path / "other" / "redis").exists()

        workers = [json.loads(v) for v in map(redis.Redis.from_url(redis_url).get,
                                              redis.Redis.from_url(redis_url).keys(WORKER_KEY.format("*")))]
        assert sorted(w["kind"] for w in workers) == ["llm", "ocr"]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_stopped_in_order(log_path, [w["pid"] for w in workers], redis_url, port)
    assert read_record(data_dir) is None
    # At the configured WARNING level: no access lines, no Celery banner, no warning about running as root.
    log = log_path.read_text()
    assert 'HTTP/1.1"' not in log and "[queues]" not in log and "superuser privileges" not in log, log


def test_sigterm_stops_an_idle_up_in_order(tmp_path, tiny_model):
    port = free_port()
    log_path = tmp_path / "up.log"
    proc = start_up(up_env(tmp_path, tmp_path / "data"), port, log_path)
    redis_url = re.search(r"private server at (\S+)", log_path.read_text()).group(1)
    client = redis.Redis.from_url(redis_url)
    worker_pids = [json.loads(client.get(key))["pid"] for key in client.keys(WORKER_KEY.format("*"))]
    try:
        proc.send_signal(signal.SIGTERM)  # what a supervisor or `docker stop` sends
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_stopped_in_order(log_path, worker_pids, redis_url, port)


def assert_stopped_in_order(log_path, worker_pids: list[int], redis_url: str, port: int) -> None:
    """Everything is gone, nothing was killed, and the workers never lost Redis on the way out (Redis went last)."""
    stopping = after_stop(log_path)
    assert "killing" not in stopping and "Connection refused" not in stopping, stopping
    assert "Error 111" not in stopping and "reconnecting" not in stopping, stopping
    assert worker_pids and not any(pid_alive(pid) for pid in worker_pids)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def assert_flower_finds_the_workers(env, tmp_path) -> None:
    port = free_port()
    flower = subprocess.Popen([sys.executable, "-m", "maoocr.cli", "flower", "--port", str(port),
                               "--basic-auth", "ops:pw"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "flower.log").open("w"))
    try:
        deadline = time.monotonic() + 90
        while True:
            assert flower.poll() is None, (tmp_path / "flower.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
            try:
                seen = requests.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", auth=("ops", "pw"),
                                    timeout=30).json()
                if len(seen) == 2:
                    break
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
    finally:
        flower.terminate()
        flower.wait(30)
    assert "using the Redis of `maoocr up`" in (tmp_path / "flower.log").read_text()


MODELS = """models:
  demo: {model_path: null}
  vl: {model_path: null, model_type: multimodal}
  vl2: {model_path: null, model_type: multimodal}
  judge: {model_path: null}
api:
  default_model: demo
"""


@pytest.mark.parametrize("ocr,expected", [
    ("{}", {"demo": ["default_model"]}),
    ("{vlm_model: vl}", {"demo": ["default_model"], "vl": ["ocr.vlm_model"]}),
    ("{vlm_model: vl, analyzer: vlm, selector: llm}",
     {"demo": ["default_model", "ocr.selector_model"], "vl": ["ocr.vlm_model", "ocr.analyzer_model"]}),
    ("{vlm_model: vl, analyzer: vlm, analyzer_model: vl2, selector: llm, selector_model: judge}",
     {"demo": ["default_model"], "vl": ["ocr.vlm_model"], "vl2": ["ocr.analyzer_model"],
      "judge": ["ocr.selector_model"]}),
    # Named but not used: the analyzer and selector models count only when those steps are on.
    ("{analyzer_model: vl2, selector_model: judge}", {"demo": ["default_model"]}),
])
def test_up_serves_every_model_the_ocr_pipeline_calls(tmp_path, ocr, expected):
    (tmp_path / "models.yaml").write_text(MODELS)
    (tmp_path / "maoocr.yaml").write_text(f"models_file: models.yaml\nocr: {ocr}\n")
    # Without a worker for the VLM, 'vlm' pages would wait on its queue until they fall back to PP-OCR.
    assert models_to_serve(load_settings(tmp_path / "maoocr.yaml", env={})) == expected


def test_up_serves_a_default_model_that_is_also_the_vlm_once(tmp_path):
    (tmp_path / "models.yaml").write_text("models:\n  vl: {model_path: null, model_type: multimodal}\n")
    (tmp_path / "maoocr.yaml").write_text("models_file: models.yaml\nocr: {vlm_model: vl, analyzer: vlm}\n")
    assert models_to_serve(load_settings(tmp_path / "maoocr.yaml", env={})) == {
        "vl": ["default_model", "ocr.vlm_model", "ocr.analyzer_model"]}

