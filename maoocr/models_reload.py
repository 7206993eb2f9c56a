"""Following the models file while the API runs: a model added to it is listed and accepted (its jobs wait in its
queue until a worker for it starts), a model removed stops taking new jobs — no API restart. A file that does not
validate is refused with a logged reason, and the models read before stay in force."""

from __future__ import annotations

import logging
import os
import threading
import time

from maoocr.config import ModelsFile, Settings, read_models_file
from maoocr.errors import ConfigError

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # a request looks at the file's stat at most this often


class ModelsFileFollower:
    def __init__(self, settings: Settings, check_every_s: float = CHECK_EVERY_S) -> None:
        self.settings = settings
        self.check_every_s = check_every_s
        self._checked_at = time.monotonic()
        self._seen = self._stat()
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Re-read the file if it changed since last seen (cheap when it did not: one stat a second)."""
        if time.monotonic() - self._checked_at < self.check_every_s or not self._lock.acquire(blocking=False):
            return
        try:
            self._checked_at = time.monotonic()
            seen = self._stat()
            if seen == self._seen:
                return
            self._seen = seen
            models = self._read()
            if models is not None:
                # One assignment: a request sees the old list or the new one, never a mix.
                self.settings.models = models
                log.warning("models file %s reloaded: %s", self.settings.models_path, ", ".join(models.models))
        finally:
            self._lock.release()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.settings.models_path) if self.settings.models_path else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    def _read(self) -> ModelsFile | None:
        try:
            models = read_models_file(self.settings.models_path)
        except ConfigError as exc:
            log.error("models file not reloaded, the models read before stay in force: %s", exc.message)
            return None
        default = models.api.default_model or next(iter(models.models))
        problems = self.settings.ocr.model_problems(models, default)
        if problems:
            log.error("models file not reloaded, the models read before stay in force: %s: ocr.%s: %s",
                      self.settings.models_path, *problems[0])
            return None
        return models
