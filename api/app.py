"""The Flask app factory: settings in, blueprints registered, shared services built once."""

from __future__ import annotations

from flask import Flask

from api import batches, documents, generate, health, jobs, metrics, openai, openapi, usage
from api.auth import init_auth
from api.errors import register_error_handlers
from api.request_id import init_request_id
from api.services import Services
from api.ws import sock
from maoocr.batches.runner import BatchRunner
from maoocr.config import Settings, load_settings
from maoocr.models_reload import ModelsFileFollower
from maoocr.webhooks.delivery import WebhookSender


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.extensions["maoocr"] = svc = Services.build(settings)
    # Werkzeug answers 413 itself past this; the exact byte limits (documents, batch files) are checked again with a
    # clear message.
    app.config["MAX_CONTENT_LENGTH"] = max(settings.documents.max_bytes, settings.batches.max_file_bytes) + 1024 * 1024
    for blueprint in (health.bp, generate.bp, openai.bp, jobs.bp, documents.bp, batches.bp, metrics.bp, openapi.bp,
                      usage.bp):
        app.register_blueprint(blueprint)
    sock.init_app(app)
    register_error_handlers(app)
    init_auth(app, settings.auth.keys(), settings.auth.admin_owners())
    init_request_id(app)
    app.before_request(ModelsFileFollower(settings).refresh)  # models added or removed apply without a restart
    if settings.webhooks.secret:
        app.extensions["maoocr.webhooks"] = WebhookSender(svc.jobs, settings.webhooks).start()
    app.extensions["maoocr.batches"] = BatchRunner(settings, svc.jobs, svc.streams, svc.batches).start()
    return app
