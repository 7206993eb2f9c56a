"""`maoocr api`: serve the Flask app on a threaded HTTP server (gunicorn with gthread in production)."""

from __future__ import annotations

import argparse
import sys

from werkzeug.serving import run_simple


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maoocr api")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)

    from api.app import create_app
    from maoocr.config import load_settings
    from maoocr.logs import setup_logging

    settings = load_settings()
    setup_logging(settings.log_level)
    app = create_app(settings)
    api = settings.models.api
    # Threaded: each SSE / WebSocket / waiting request holds a thread while its job runs.
    run_simple(args.host or api.host, args.port if args.port is not None else api.port, app, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
