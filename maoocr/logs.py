"""Logging set-up: one line per event, quiet by default."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str = "WARNING") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.captureWarnings(True)  # Python warnings become one log line each, not a multi-line stderr print
    # vLLM and Celery are chatty at INFO; keep them at our level or above.
    for noisy in ("vllm", "celery", "kombu"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.WARNING))
    # vLLM sets its own level from this variable when it is imported (after us), and its engine process inherits it.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", logging.getLevelName(max(logging.getLogger().level, logging.WARNING)))
    # werkzeug logs each request at INFO and sets its logger to INFO unless a level is set: follow ours.
    logging.getLogger("werkzeug").setLevel(logging.getLogger().level)
