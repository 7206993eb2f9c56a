"""`maoocr api`: serve the Flask app on a threaded HTTP server (gunicorn with gthread in production)."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, run_simple

# werkzeug listens with a backlog of 128; hundreds of clients connecting at once (one per waiting job) overflow it.
BaseWSGIServer.request_queue_size = 2048

if TYPE_CHECKING:
    from flask import Flask

    from maoocr.config import Settings


class NoDelayHandler(WSGIRequestHandler):
    """Sends every write at once. Token chunks are small writes; with Nagle's algorithm on, one waits for the
    client's delayed ACK (40 ms on Linux) whenever the previous is unacknowledged, which would put ~40 ms on a
    WebSocket hop (gunicorn sets TCP_NODELAY itself)."""

    def setup(self) -> None:
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):  # not for unix:// sockets
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def configured_app() -> tuple[Settings, Flask]:
    """Settings loaded, logging set up and the app built: the same start for `maoocr api` and gunicorn."""
    from api.app import create_app
    from maoocr.config import load_settings
    from maoocr.logs import setup_logging

    settings = load_settings()
    setup_logging(settings.log_level)
    return settings, create_app(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maoocr api")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)

    from maoocr.auth import is_loopback

    settings, app = configured_app()
    api = settings.models.api
    host = args.host or api.host
    if not settings.auth.keys().enabled and not is_loopback(host):
        logging.getLogger("maoocr.api").warning(
            "auth is OFF and the API listens on %s: anyone who can reach it can read every job. "
            "Set MAOOCR_API_KEYS (or auth.api_keys) to require keys.", host)
    # Threaded: each SSE / WebSocket / waiting request holds a thread while its job runs.
    run_simple(host, args.port if args.port is not None else api.port, app, threaded=True,
               request_handler=NoDelayHandler)
    return 0


def create_wsgi_app() -> Flask:
    """The WSGI app for gunicorn: `gunicorn -k gthread --workers 4 --threads 256 'api.server:create_wsgi_app()'`.

    Threads, not sync workers: every SSE stream, WebSocket and waiting request holds one while its job runs.
    """
    return configured_app()[1]


if __name__ == "__main__":
    sys.exit(main())
