"""`maoocr up`, the embedded default: private Redis, a worker and the API from one command; Ctrl-C stops all."""

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
from devtools.processes import ROOT
from maoocr.config import load_settings
from maoocr.embedded import free_port, models_to_serve
from maoocr.store.keys import WORKER_KEY


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
                                              redis.Redis.from_url(redis_url).keys(WORKER_KEY.format("*")))]
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
