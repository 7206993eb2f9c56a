"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Redis up and a worker alive)."""

from __future__ import annotations

import redis
from flask import Blueprint

from api.services import services
from maoocr.store.heartbeats import live_workers

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    try:
        client = services().jobs.redis
        client.ping()
        workers = live_workers(client)
    except redis.RedisError as exc:
        return {"status": "unavailable", "redis": f"down: {exc}", "workers": []}, 503
    body = {"status": "ready" if workers else "unavailable", "redis": "up",
            "workers": [{"name": w.get("name"), "kind": w.get("kind"), "model": w.get("model"), "queue": w.get("queue")}
                        for w in workers]}
    return body, 200 if workers else 503
