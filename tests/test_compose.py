"""docker-compose.yml, checked without a Docker engine: its shape (persistent password-protected Redis, one GPU
worker per GPU, Flower behind basic auth, configs mounted), every command it runs exists in the project and
parses with the real argument parsers, the gunicorn command really serves SSE and WebSockets, and
`docker compose config` accepts the file where a client can run offline."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import websocket
import yaml
from gunicorn.config import Config
from gunicorn.util import import_app

from devtools.processes import ROOT, Proc, wait_http
from maoocr.cli import _DELEGATED
from maoocr.embedded import free_port

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_ENV = {"REDIS_PASSWORD": "test-redis-pw", "FLOWER_PASSWORD": "test-flower-pw"}
_VAR = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # merge keys (<<) are resolved by the loader


def project_services(compose: dict) -> dict[str, dict]:
    """The services that run this project's image (built from its Dockerfile)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def resolve(text: str) -> str:
    """${VAR:-default} → default; ${VAR:?message} → a test value: what compose would pass with .env.example."""
    return _VAR.sub(lambda m: COMPOSE_ENV.get(m.group(1), m.group(2) or ""), text)


def command(svc: dict) -> list[str]:
    return [resolve(str(part)) for part in svc["command"]]


def configured_models() -> set[str]:
    return set(yaml.safe_load((ROOT / "configs" / "vllm_models.yaml").read_text())["models"])


def test_redis_keeps_an_append_only_file_and_needs_a_password(compose):
    redis = compose["services"]["redis"]
    args = redis["command"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")  # no default password
    assert any(v.endswith(":/data") for v in redis["volumes"])  # the AOF lives on a named volume
    assert "redis-data" in compose["volumes"]
    for name, svc in project_services(compose).items():
        url = resolve(svc["environment"]["MAOOCR_REDIS_URL"])
        assert url == f"redis://:{COMPOSE_ENV['REDIS_PASSWORD']}@redis:6379/0", name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_one_gpu_worker_per_gpu_on_its_model_queue(compose):
    gpu_workers = {n: s for n, s in compose["services"].items() if "deploy" in s}
    assert len(gpu_workers) >= 2
    reserved = []
    for name, svc in gpu_workers.items():
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
        assert len(devices[0]["device_ids"]) == 1, f"{name} must own exactly one GPU"
        reserved += devices[0]["device_ids"]
        args = command(svc)
        assert args[:2] == ["maoocr", "worker"], name
        # The container sees only its reserved GPU, as index 0: the pin and the variable must agree on it.
        assert args[args.index("--gpu") + 1] == svc["environment"]["CUDA_VISIBLE_DEVICES"] == "0", name
        assert args[args.index("--model") + 1] in configured_models(), name  # → queue maoocr.llm.<model>
        assert svc["profiles"] == ["gpu"] and svc["build"]["args"]["VARIANT"] == "gpu", name
        assert svc["environment"]["MAOOCR_REDIS_URL"], name  # the merged environment survived the override
    assert len(set(reserved)) == len(reserved), f"two workers reserve the same GPU: {reserved}"
    cpu = command(compose["services"]["worker-cpu"])
    assert cpu[:3] == ["maoocr", "worker", "--cpu"] and cpu[cpu.index("--model") + 1] in configured_models()
    assert command(compose["services"]["worker-ocr"])[:3] == ["maoocr", "worker", "--ocr"]
    assert command(compose["services"]["worker-ocr-models"])[:3] == ["maoocr", "worker", "--ocr-models"]


def test_flower_is_behind_basic_auth_and_configs_are_mounted(compose):
    flower = compose["services"]["flower"]
    assert command(flower)[:2] == ["maoocr", "flower"]
    user, _, password = resolve(flower["environment"]["FLOWER_BASIC_AUTH"]).partition(":")
    assert user and password == COMPOSE_ENV["FLOWER_PASSWORD"]
    assert "FLOWER_PASSWORD:?" in flower["environment"]["FLOWER_BASIC_AUTH"]  # no default password
    for name, svc in project_services(compose).items():
        config = Path(svc["environment"]["MAOOCR_CONFIG"])
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts.get(str(config.parent)) == "./configs", name
        assert (ROOT / "configs" / config.name).is_file(), name
    for volume in compose["services"]["prometheus"]["volumes"]:
        assert (ROOT / volume.split(":")[0]).exists(), volume


def test_every_command_exists_and_parses(compose, monkeypatch):
    monkeypatch.setenv("MAOOCR_CONFIG", str(ROOT / "configs" / "maoocr.yaml"))
    seen = set()
    for name, svc in project_services(compose).items():
        args = command(svc)
        if args[0] == "maoocr":
            assert args[1] in _DELEGATED, f"{name}: maoocr has no subcommand {args[1]!r}"
            module = importlib.import_module(_DELEGATED[args[1]][0])
            parsed = module.parse_args(args[2:])  # argparse exits on an unknown flag
            if isinstance(parsed, tuple):
                assert parsed[1] == [], f"{name}: flags passed through unchecked: {parsed[1]}"
        else:
            assert args[0] == "gunicorn", name
            options = Config().parser().parse_args(args[1:])
            assert options.worker_class == "gthread" and options.threads >= 8, "SSE/WS need threads"
            app = import_app(options.args[0])  # builds the real Flask app from the mounted config
            assert {rule.rule for rule in app.url_map.iter_rules()} >= {"/v1/jobs/<job_id>/events", "/ws/stream"}
        seen.add(args[1] if args[0] == "maoocr" else "gunicorn")
    assert seen == {"worker", "flower", "gunicorn"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the project"


def test_the_gunicorn_command_serves_sse_and_websockets(compose, stack):
    args = command(compose["services"]["api"])
    port = free_port()
    args[args.index("--bind") + 1] = f"127.0.0.1:{port}"
    args[args.index("--workers") + 1] = "1"  # a small machine; the worker class and threads stay as deployed
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is a dependency of the project"
    log = stack.logdir / "gunicorn.log"
    proc = Proc("gunicorn", subprocess.Popen([gunicorn, *args[1:]], cwd=ROOT, env=stack.env, stdout=log.open("w"),
                                             stderr=subprocess.STDOUT), log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/readyz", [proc], timeout_s=60)
        job = requests.post(base + "/api/generate",
                            json={"prompt": "say hello to the world", "max_tokens": 6, "ignore_eos": True},
                            timeout=30).json()
        events = requests.get(f"{base}/v1/jobs/{job['job_id']}/events", timeout=120)
        assert events.headers["Content-Type"].startswith("text/event-stream")
        assert "event: end" in events.text and events.text.count("event: token") >= 1
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/stream", timeout=60)
        try:
            ws.send('{"prompt": "count to five please", "max_tokens": 5, "ignore_eos": true}')
            chunks = []
            while not chunks or not chunks[-1]["finished"]:
                chunks.append(json.loads(ws.recv()))
        finally:
            ws.close()
        assert chunks[-1]["usage"]["completion_tokens"] == 5
    finally:
        proc.stop()


def compose_client() -> list[str] | None:
    for client in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(client[0]):
            done = subprocess.run([*client, "version"], capture_output=True, text=True)
            if done.returncode == 0:
                return client
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    client = compose_client()
    if client is None:
        pytest.skip("no Docker Compose client here (`docker compose version` and `docker-compose version` fail); "
                    "the file was checked by parsing only")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **COMPOSE_ENV}
    base = [*client, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    done = subprocess.run([*base, "--profile", "gpu", "--profile", "monitoring", "config"], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == {"redis", "api", "worker-cpu", "worker-gpu0", "worker-gpu1", "worker-ocr",
                                         "flower", "prometheus"}
    assert resolved["services"]["api"]["environment"]["MAOOCR_REDIS_URL"] == "redis://:test-redis-pw@redis:6379/0"
    missing = subprocess.run([*base, "config"], capture_output=True, text=True,
                             env={k: v for k, v in env.items() if k != "REDIS_PASSWORD"}, cwd=tmp_path)
    assert missing.returncode != 0 and "REDIS_PASSWORD" in missing.stderr
