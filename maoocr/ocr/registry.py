"""Named OCR engines: a factory per backend, and thread-safe cached instances for workers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from maoocr.errors import InvalidRequest
from maoocr.ocr.base import OCREngine

EngineFactory = Callable[..., OCREngine]

DEFAULT_ENGINE = "rapidocr"


def _rapidocr(**options: Any) -> OCREngine:
    from maoocr.ocr.rapid_engine import RapidOCREngine

    return RapidOCREngine(**options)


def _paddleocr(**options: Any) -> OCREngine:
    from maoocr.ocr.paddle_engine import PaddleOCREngine

    return PaddleOCREngine(**options)


# Backends import lazily so an unused one costs nothing. The VLM backend registers here too, e.g.
# register_ocr_engine("vlm", lambda **o: VLMOCREngine(**o)), implementing OCREngine.recognize -> PageOCR.
_FACTORIES: dict[str, EngineFactory] = {"rapidocr": _rapidocr, "paddleocr": _paddleocr}
_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], OCREngine] = {}
_LOCK = threading.Lock()


def register_ocr_engine(name: str, factory: EngineFactory) -> None:
    """Make `create_ocr_engine(name, **options)` call `factory(**options)`."""
    with _LOCK:
        _FACTORIES[name] = factory


def available_ocr_engines() -> list[str]:
    return sorted(_FACTORIES)


def create_ocr_engine(name: str = DEFAULT_ENGINE, **options: Any) -> OCREngine:
    """A new engine. Raises InvalidRequest for an unknown name, OCREngineUnavailable if it cannot run here."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise InvalidRequest(f"unknown OCR engine {name!r}; available: {', '.join(available_ocr_engines())}")
    return factory(**options)


def get_ocr_engine(name: str = DEFAULT_ENGINE, **options: Any) -> OCREngine:
    """A shared engine per (name, options), created once even when many threads ask at the same time."""
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    engine = _CACHE.get(key)
    if engine is not None:
        return engine
    with _LOCK:
        engine = _CACHE.get(key)
        if engine is None:
            # Created under the lock: loading models twice would waste seconds and hundreds of MB.
            engine = create_ocr_engine(name, **options)
            _CACHE[key] = engine
        return engine


def get_default_ocr_engine() -> OCREngine:
    return get_ocr_engine(DEFAULT_ENGINE)


def clear_ocr_engine_cache() -> None:
    """Drop cached engines (tests, or a worker reloading its configuration)."""
    with _LOCK:
        engines = list(_CACHE.values())
        _CACHE.clear()
    for engine in engines:
        engine.close()
