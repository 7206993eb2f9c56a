"""`GET /metrics`: Prometheus text of the values every API process reads alike from Redis at scrape time."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.services import services
from maoocr.metrics import RedisStatsCollector
from maoocr.usage.metrics import UsageCollector

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions.get("maoocr.metrics")
    if registry is None:
        svc = services()
        settings = svc.settings
        assert settings.models is not None
        configured = [settings.queues.ocr, *(settings.queues.llm_queue(m) for m in settings.models.models)]
        # Its own registry: this process's default one holds per-process worker metrics that mean nothing here.
        registry = CollectorRegistry()
        registry.register(RedisStatsCollector(svc.jobs.redis, lambda: configured))
        registry.register(UsageCollector(svc.jobs.redis))
        current_app.extensions["maoocr.metrics"] = registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
