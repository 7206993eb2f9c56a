"""Logging set-up: one line per event, quiet by default."""

from __future__ import annotations

import logging


def setup_logging(level: str = "WARNING") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # vLLM and Celery are chatty at INFO; keep them at our level or above.
    for noisy in ("vllm", "celery", "kombu"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.WARNING))
