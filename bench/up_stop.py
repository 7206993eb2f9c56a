"""How long `maoocr up` takes to stop an idle stack, and whether it had to kill anything.

Starts `maoocr up` (its own Redis, the demo model, a data dir of its own), waits for its banner and a few seconds
more, sends SIGTERM (what `docker stop` or a supervisor sends) or SIGINT (Ctrl-C), and times it until it exits.
Prints `up_stop_s` per signal, with the lines the stop printed after "stopping MaoOCR" (empty when quiet).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools.processes import ROOT, ctrl_c_reaches_it
from maoocr.embedded import free_port

SETTLE_S = 3.0  # after the banner: the stack is idle, not still warming up


def stop_once(signum: int, work: Path) -> dict:
    (work / "models.yaml").write_text("models:\n  demo: {model_path: null, max_model_len: 512}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOOCR_")}
    env.update(MAOOCR_MODELS_FILE=str(work / "models.yaml"), MAOOCR_DATA_DIR=str(work / "data"),
               TMPDIR=str(work), PYTHONUNBUFFERED="1")
    log = work / "up.log"
    proc = subprocess.Popen([sys.executable, "-m", "maoocr.cli", "up", "--port", str(free_port())], cwd=ROOT,
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            preexec_fn=ctrl_c_reaches_it)  # noqa: PLW1509 -- no threads run here yet
    try:
        deadline = time.monotonic() + 600
        while "MaoOCR is up" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"maoocr up did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        time.sleep(SETTLE_S)
        started = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(180)
        seconds = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    after = log.read_text().split("stopping MaoOCR …", 1)[-1].strip()
    return {"metric": "up_stop_s", "value": round(seconds, 2), "signal": signal.Signals(signum).name,
            "exit_code": code, "killed": "killing" in after, "printed_after_stopping": after[:2000],
            "note": "idle stack: Redis, an LLM worker (demo model), an OCR worker, the API"}


def run() -> list[dict]:
    figures = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with tempfile.TemporaryDirectory(prefix="maoocr-up-stop-") as work:
            figures.append(stop_once(signum, Path(work)))
    return figures
