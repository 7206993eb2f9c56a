"""Start real Redis, worker and API processes on free ports, wait until they answer, and stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests
import yaml

from maoocr.config import Settings, load_settings
from maoocr.embedded import free_port, start_redis_server

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_redis(workdir: Path, port: int | None = None, extra: list[str] | None = None,
                password: str | None = None) -> tuple[Proc, str]:
    """A redis-server on `port` (a free one by default), its log in `workdir`; `extra` options come last and win."""
    port = port or free_port()
    log = workdir / f"redis-{port}.log"
    popen, url = start_redis_server(workdir, port, password, extra, log)
    return Proc("redis", popen, log), url


BENCH_LOG_LEVEL = "WARNING"  # the shipped default (configs/maoocr.yaml): benchmarks time what production runs


def settings_for(url: str, directory: Path) -> Settings:
    """Settings with only a Redis URL and one model (no config file): for tests of the Redis and Celery wiring."""
    (directory / "models.yaml").write_text("models:\n  m:\n    model_path: null\n")
    return load_settings(directory / "none.yaml", env={"MAOOCR_REDIS_URL": url,
                                                       "MAOOCR_MODELS_FILE": str(directory / "models.yaml")})


def write_config(directory: Path, redis_url: str, model_path: str, model: dict | None = None,
                 extra_models: dict[str, dict] | None = None, log_level: str = "INFO") -> Path:
    """A maoocr.yaml + models file for one model named `tiny`; returns the maoocr.yaml path.

    `model` overrides the model's settings (max_model_len, max_num_seqs, load_format, …); `extra_models`
    adds more models (name → settings) next to `tiny`. Tests log at INFO (their failures show the per-job
    lines); benchmarks pass the shipped default, WARNING, since per-job log lines cost the worker CPU.
    """
    directory.mkdir(parents=True, exist_ok=True)
    settings = {"model_path": model_path, "model_type": "text", "max_model_len": 1024, "max_num_seqs": 64,
                **(model or {})}
    (directory / "vllm_models.yaml").write_text(yaml.safe_dump(
        {"models": {"tiny": settings, **(extra_models or {})}, "api": {"default_model": "tiny"}}))
    config = directory / "maoocr.yaml"
    config.write_text(f"redis_url: {redis_url}\nmodels_file: {directory / 'vllm_models.yaml'}\n"
                      f"data_dir: {directory / 'data'}\nlog_level: {log_level}\n"
                      f"limits:\n  wait_timeout_s: 120\nttls:\n  heartbeat_s: 6\n"
                      # every worker exports /metrics on a free port, announced in its heartbeat
                      f"metrics:\n  worker_port: 0\n")
    return config


def service_env(config: Path, scratch: Path) -> dict[str, str]:
    scratch.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOOCR_")}
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(MAOOCR_CONFIG=str(config), TMPDIR=str(scratch), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=python_path)
    return env


def ctrl_c_reaches_it() -> None:
    """preexec_fn for a process a test interrupts with SIGINT, as Ctrl-C in a terminal would: a test run started
    in the background (`cmd &` in a script) hands its children SIGINT ignored, and Python keeps it so."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_module(name: str, module: str, args: list[str], env: dict[str, str], logdir: Path) -> Proc:
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{name}.log"
    popen = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                             stdout=log.open("w"), stderr=subprocess.STDOUT)
    return Proc(name, popen, log)


def wait_http(url: str, procs: list[Proc], timeout_s: float = 600, status: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if requests.get(url, timeout=2).status_code == status:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout_s} s:\n" + "\n".join(p.tail(30) for p in procs))


@dataclass
class Stack:
    """A running MaoOCR: its Redis, worker(s), API and the config they share."""

    redis_url: str
    base_url: str
    config: Path
    env: dict[str, str]
    logdir: Path
    procs: list[Proc] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def api_server(api_workers: int) -> str:
    """How start_stack serves the API, for benchmark output."""
    return f"gunicorn gthread x{api_workers}" if api_workers else "maoocr api (1 process)"


def start_api(port: int, env: dict[str, str], logdir: Path, api_workers: int = 0, api_threads: int = 64) -> Proc:
    """The API on loopback `port`: gunicorn gthread with `api_workers` processes of `api_threads` threads, as
    production serves it, or (0) one `maoocr api` process, werkzeug's threaded server."""
    if api_workers:
        return start_module("api", "gunicorn", [
            "--worker-class", "gthread", "--workers", str(api_workers), "--threads", str(api_threads),
            "--backlog", "2048", "--bind", f"127.0.0.1:{port}", "api.server:create_wsgi_app()"], env, logdir)
    return start_module("api", "api.server", ["--host", "127.0.0.1", "--port", str(port)], env, logdir)


def start_stack(workdir: Path, redis_url: str, model_path: str, worker_args: list[str] | None = None,
                ocr_worker: bool = False, model: dict | None = None, env: dict[str, str] | None = None,
                extra_models: dict[str, dict] | None = None, api_workers: int = 0, api_threads: int = 64,
                log_level: str = "INFO") -> Stack:
    """`env` adds variables to every process (e.g. MAOOCR_API_KEYS); each of `extra_models` gets its own
    CPU worker. `api_workers` >= 1 serves the API as production does: gunicorn gthread, that many processes of
    `api_threads` threads each (0: one `maoocr api` process, werkzeug's threaded server)."""
    config = write_config(workdir / "configs", redis_url, model_path, model, extra_models, log_level)
    env = {**service_env(config, workdir / "tmp"), **(env or {})}
    port = free_port()
    stack = Stack(redis_url, f"http://127.0.0.1:{port}", config, env, workdir / "logs")
    try:
        stack.procs.append(start_module("worker", "workers.main", worker_args or ["--cpu"], env, stack.logdir))
        for name in extra_models or {}:
            stack.procs.append(start_module(f"worker-{name}", "workers.main", ["--cpu", "--model", name], env,
                                            stack.logdir))
        model_steps = ocr_worker and load_settings(config, env).ocr_calls_models
        if ocr_worker:
            stack.procs.append(start_module("ocr-worker", "workers.main", ["--ocr"], env, stack.logdir))
        if model_steps:
            stack.procs.append(start_module("ocr-models-worker", "workers.main", ["--ocr-models"], env,
                                            stack.logdir))
        stack.procs.append(start_api(port, env, stack.logdir, api_workers, api_threads))
        wait_http(stack.base_url + "/healthz", stack.procs)
        expected = 1 + len(extra_models or {}) + (1 if ocr_worker else 0) + (1 if model_steps else 0)
        wait_until(lambda: len(requests.get(stack.base_url + "/readyz", timeout=5).json()["workers"]) >= expected,
                   stack.procs)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextmanager
def private_stack(workdir: Path, model_path: str, redis_password: str | None = None, **stack_args) -> Iterator[Stack]:
    """A stack on a Redis of its own (so no other test's worker takes its jobs); both stop on exit."""
    redis_proc, url = start_redis(workdir / "redis", password=redis_password)
    try:
        stack = start_stack(workdir, url, model_path, **stack_args)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        redis_proc.stop()


def wait_for_job(stack: Stack, job_id: str, timeout_s: float = 240) -> dict:
    """Poll a job's record until it ends; its last record."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def wait_until(condition, procs: list[Proc], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError("condition not met in time:\n" + "\n".join(p.tail(30) for p in procs))
        time.sleep(0.3)
