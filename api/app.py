"""The Flask app factory: settings in, blueprints registered, shared services built once."""

from __future__ import annotations

from flask import Flask

from api import generate, health, jobs, openai
from api.errors import register_error_handlers
from api.services import Services
from api.ws import sock
from maoocr.config import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.extensions["maoocr"] = Services.build(settings)
    for blueprint in (health.bp, generate.bp, openai.bp, jobs.bp):
        app.register_blueprint(blueprint)
    sock.init_app(app)
    register_error_handlers(app)
    return app
