"""`maoocr up`, the embedded default: private Redis, a worker and the API from one command; Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import redis
import requests

from maoocr.embedded import free_port
from tests import docgen
from tests.support.processes import ROOT


def test_up_runs_everything_and_ctrl_c_stops_it(tmp_path, tiny_model):
    port = free_port()
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  demo:\n    model_path: null\n    max_model_len: 512\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOOCR_")}
    # No MAOOCR_REDIS_URL: up must start its own Redis. The demo model is built into data_dir.
    env.update(MAOOCR_MODELS_FILE=str(models), MAOOCR_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(tmp_path),
               PYTHONUNBUFFERED="1")
    log = (tmp_path / "up.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "maoocr.cli", "up", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while "MaoOCR is up" not in (tmp_path / "up.log").read_text():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.5)
        out = (tmp_path / "up.log").read_text()
        assert "RANDOM demo model" in out and "meaningless" in out
        redis_url = re.search(r"private server at (\S+)", out).group(1)
        reply = requests.post(f"http://127.0.0.1:{port}/api/generate", timeout=120,
                              json={"prompt": "hi", "max_tokens": 8, "wait": True, "ignore_eos": True})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 8
        page = tmp_path / "page.png"
        docgen.numbered_pages(1)[0].image.save(page)
        ocr = subprocess.run([sys.executable, "-m", "maoocr.cli", "submit", str(page), "--wait", "--api",
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=240, env=env)
        assert ocr.returncode == 0 and "page one" in ocr.stdout, ocr.stderr
        workers = [json.loads(v) for v in map(redis.Redis.from_url(redis_url).get,
                                              redis.Redis.from_url(redis_url).keys("maoocr:worker:*"))]
        assert sorted(w["kind"] for w in workers) == ["llm", "ocr"]
        worker_pid = next(w["pid"] for w in workers if w.get("kind") != "ocr")

        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not _alive(worker_pid)
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
        raise AssertionError("the private Redis is still running")
    except redis.ConnectionError:
        pass
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        raise AssertionError("the API is still running")
    except requests.ConnectionError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
