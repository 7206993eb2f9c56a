"""MaoOCR core library: documents, pages, engines, jobs and streams. Imports neither Flask nor Celery.

`from maoocr import MaoOCR` is the in-process library API (maoocr.pipeline.facade); it is imported on first
use, so `import maoocr` (the API process does) loads neither OpenCV nor vLLM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["MaoOCR", "Recognition", "__version__"]

if TYPE_CHECKING:
    from maoocr.pipeline.facade import MaoOCR, Recognition


def __getattr__(name: str) -> Any:
    if name in ("MaoOCR", "Recognition"):
        from maoocr.pipeline import facade

        return getattr(facade, name)
    raise AttributeError(f"module 'maoocr' has no attribute {name!r}")
