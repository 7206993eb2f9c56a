"""Optional backend on the `paddleocr` 3.x package (PaddlePaddle runtime), using local model directories only."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

from maoocr.documents import paper_rgb
from maoocr.errors import EngineError
from maoocr.ocr.base import OCREngine, OCREngineUnavailable, RawLine, assemble_page, to_bgr_array
from maoocr.ocr.geometry import rotate_clockwise
from maoocr.ocr.page_builder import get_structurer
from maoocr.ocr.types import PageOCR

# paddleocr 3.0's documented defaults; pass other names (and their directories) to use other models.
DEFAULT_MODELS = {
    "text_detection": "PP-OCRv5_server_det",
    "text_recognition": "PP-OCRv5_server_rec",
    "doc_orientation_classify": "PP-LCNet_x1_0_doc_ori",
}


def paddlex_model_cache() -> Path:
    """Where PaddleX stores downloaded official models (PADDLE_PDX_CACHE_HOME, default ~/.paddlex)."""
    home = os.environ.get("PADDLE_PDX_CACHE_HOME") or str(Path.home() / ".paddlex")
    return Path(home) / "official_models"


def _model_present(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("inference.*"))


class PaddleOCREngine(OCREngine):
    """`paddleocr.PaddleOCR(...).predict(...)` behind the MaoOCR interface.

    Page orientation comes from PaddleOCR's document-orientation classifier; unwarping and per-line
    orientation are off. Model directories are resolved before construction and passed explicitly, so a
    missing model raises OCREngineUnavailable instead of starting a download (unless allow_download=True).
    """

    name = "paddleocr"

    def __init__(self, *, detect_orientation: bool = True, device: str = "cpu", cpu_threads: int | None = None,
                 model_names: dict[str, str] | None = None, model_dirs: dict[str, str | Path] | None = None,
                 allow_download: bool = False, **paddle_options: Any) -> None:
        for module in ("paddle", "paddleocr"):
            if importlib.util.find_spec(module) is None:
                raise OCREngineUnavailable(f"the paddleocr backend needs the {module!r} package, which is not "
                                           "installed (pip install paddlepaddle paddleocr)")
        names = {**DEFAULT_MODELS, **(model_names or {})}
        if not detect_orientation:
            names.pop("doc_orientation_classify")
        dirs = {key: Path(value) for key, value in (model_dirs or {}).items()}
        missing = []
        for key, model in names.items():
            directory = dirs.get(key, paddlex_model_cache() / model)
            if _model_present(directory):
                dirs[key] = directory
            else:
                missing.append(f"{key}={model} (looked in {directory})")
        if missing and not allow_download:
            raise OCREngineUnavailable("paddleocr models are not available locally: " + "; ".join(missing)
                                       + ". Download them beforehand or pass model_dirs=.")
        # Skips PaddleX's start-up connectivity check of model hosters, which stalls offline machines.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        kwargs: dict[str, Any] = {
            "use_doc_orientation_classify": detect_orientation,
            "use_doc_unwarping": False,
            "use_textline_orientation": False,
            "device": device,
            **paddle_options,
        }
        for key, model in names.items():
            kwargs[f"{key}_model_name"] = model
            if key in dirs:
                kwargs[f"{key}_model_dir"] = str(dirs[key])
        if cpu_threads:
            kwargs["cpu_threads"] = int(cpu_threads)
        try:
            from paddleocr import PaddleOCR

            self._ocr = PaddleOCR(**kwargs)
        except Exception as exc:
            raise OCREngineUnavailable(f"paddleocr failed to initialise: {exc}") from exc
        self._lock = threading.Lock()  # PaddleX pipelines are not documented as thread-safe

    def recognize(self, image: Image.Image) -> PageOCR:
        started = time.perf_counter()
        rgb = paper_rgb(image)
        with self._lock:
            try:
                results = self._ocr.predict(to_bgr_array(rgb))
            except Exception as exc:
                raise EngineError(f"paddleocr failed on a {image.width}x{image.height} page: {exc}") from exc
        timings = {"ocr": round((time.perf_counter() - started) * 1000.0, 1)}
        if not results:
            return assemble_page(self.name, [], 0, rgb.size, timings)
        res = results[0]
        preprocess = res.get("doc_preprocessor_res") or {}
        # PaddleX's angle is the counter-clockwise rotation it applied (-1: classifier off); ours is clockwise.
        angle = int(preprocess.get("angle", -1)) if hasattr(preprocess, "get") else -1
        orientation = (360 - angle) % 360 if angle in (90, 180, 270) else 0
        raw = [RawLine(text=str(text), polygon=[(float(x), float(y)) for x, y in poly], confidence=float(score))
               for text, score, poly in zip(res.get("rec_texts", []), res.get("rec_scores", []),
                                            res.get("rec_polys", []), strict=False)]
        upright = rotate_clockwise(rgb, orientation)
        page = assemble_page(self.name, raw, orientation, rgb.size, timings, upright, get_structurer())
        page.timings_ms["total"] = round((time.perf_counter() - started) * 1000.0, 1)
        return page
