"""Fixtures that own real processes: for the session a private redis-server, a tiny vLLM model, a worker and the
API; for a test, a Redis of its own (and a Celery broker on it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import redis

from devtools.processes import Stack, service_env, start_redis, start_stack, write_config
from maoocr.config import Settings, load_settings
from maoocr.engines.demo_model import build_demo_model
from workers.celery_app import create_celery_app


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.stop()


@pytest.fixture
def own_redis(tmp_path) -> str:
    """A Redis of this test's own, for tests whose keys (e.g. a worker heartbeat) or kills must not reach the
    session stack."""
    proc, url = start_redis(tmp_path / "redis")
    yield url
    proc.stop()


@pytest.fixture
def broker(own_redis, tmp_path, request):
    """A Celery app on a Redis of this test's own, and a worker environment: (client, app, env, log folder). The
    visibility timeout is 2 s unless a test asks for another (`@pytest.mark.parametrize("broker", [N],
    indirect=True)`): a killed worker's jobs come back after 2 s."""
    config = write_config(tmp_path / "configs", own_redis, "unused", log_level="INFO")
    config.write_text(config.read_text() + f"worker:\n  redelivery_timeout_s: {getattr(request, 'param', 2)}\n")
    env = service_env(config, tmp_path / "tmp")
    app = create_celery_app(load_settings(config, env={}))
    try:
        yield redis.Redis.from_url(own_redis), app, env, tmp_path / "logs"
    finally:
        app.close()


@pytest.fixture
def redis_client(redis_url) -> redis.Redis:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("tiny-model"))


# Webhooks on, to the tests' own receivers on loopback, retried quickly and given up after 3 attempts.
WEBHOOKS_ENV = {"MAOOCR_WEBHOOKS__SECRET": "test-webhook-secret", "MAOOCR_WEBHOOKS__ALLOW_PRIVATE": "true",
                "MAOOCR_WEBHOOKS__BACKOFF_S": "0.2", "MAOOCR_WEBHOOKS__MAX_ATTEMPTS": "3"}


# Batch completion windows down to a second (OpenAI's shortest is an hour), so a test can see a batch expire; running
# batches checked every 2 s for line jobs that vanished.
BATCHES_ENV = {"MAOOCR_BATCHES__MIN_WINDOW_S": "1", "MAOOCR_BATCHES__SWEEP_S": "2"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory, redis_url, tiny_model) -> Stack:
    running = start_stack(tmp_path_factory.mktemp("stack"), redis_url, str(tiny_model), ocr_worker=True,
                          env={**WEBHOOKS_ENV, **BATCHES_ENV})
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stack_settings(stack) -> Settings:
    return load_settings(stack.config, env={})


def pytest_sessionfinish(session, exitstatus) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """The report is out: a run that loaded vLLM in this process ends without the interpreter's teardown, where
    Triton's bindings print a screen of nanobind leak reports after the summary."""
    if "vllm" in sys.modules and _EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[_EXIT_STATUS])


_EXIT_STATUS = pytest.StashKey[int]()
