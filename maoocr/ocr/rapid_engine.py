"""Default OCR backend: PaddleOCR's PP-OCR models as ONNX, shipped inside the rapidocr wheel; offline, CPU."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from maoocr.documents import paper_rgb
from maoocr.errors import EngineError, InvalidRequest
from maoocr.ocr.base import OCREngine, OCREngineUnavailable, RawLine, assemble_page, to_bgr_array
from maoocr.ocr.geometry import rotate_clockwise
from maoocr.ocr.gutters import split_at_gutters
from maoocr.ocr.orientation import detect_orientation
from maoocr.ocr.page_builder import get_structurer
from maoocr.ocr.types import PageOCR, Point

Profile = Literal["fast", "accurate"]

# The wheel ships one model set (det + rec + line classifier), so "accurate" cannot switch to server models.
# "fast" shrinks pages to 2000 px on the long side before detection and recognition; "accurate" works at the
# native resolution up to 4000 px (fine print on 300 dpi scans survives) and enlarges small images itself.
PROFILES: dict[str, dict[str, Any]] = {
    "fast": {"Det.limit_type": "min", "Det.limit_side_len": 736, "Global.max_side_len": 2000},
    "accurate": {"Det.limit_type": "max", "Det.limit_side_len": 4000, "Global.max_side_len": 4000},
}
# "accurate" detects at native size, so images whose short side is below this are enlarged first (what "fast"
# gets from rapidocr's limit_type=min).
_ACCURATE_MIN_SIDE = 736
# Orientation probing only needs line shapes, so the detector runs on at most ~960 px.
_PROBE = {"Det.limit_type": "max", "Det.limit_side_len": 960, "Global.max_side_len": 2000}


def packaged_model_dir() -> Path:
    """Where the rapidocr wheel keeps its ONNX models."""
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


def find_models(model_dir: str | Path | None = None) -> dict[str, Path]:
    """The det/rec/cls ONNX files in `model_dir` (default: the packaged ones); exactly one of each must exist."""
    directory = Path(model_dir) if model_dir else packaged_model_dir()
    found: dict[str, Path] = {}
    problems: list[str] = []
    for task in ("det", "rec", "cls"):
        matches = sorted(p for p in directory.glob(f"*{task}*.onnx") if p.is_file())
        if len(matches) == 1:
            found[task] = matches[0]
        elif not matches:
            problems.append(f"no *{task}*.onnx")
        else:
            problems.append(f"several *{task}*.onnx ({', '.join(m.name for m in matches)}); pass {task}_model=")
    if problems:
        raise OCREngineUnavailable(f"rapidocr models not usable in {directory}: {'; '.join(problems)}. "
                                   "rapidocr would download missing models at run time, which MaoOCR does not "
                                   "allow; reinstall the rapidocr wheel or pass model paths.")
    return found


class RapidOCREngine(OCREngine):
    """rapidocr (ONNX Runtime) with page-orientation correction, layout analysis and block reading order.

    `layout` runs the process's layout and table models on the page (else blocks come from the lines alone);
    `gutters` cuts lines that the detector ran across a column gutter. `line_classifier` enables rapidocr's
    per-line 0/180 classifier; it is off by default because page orientation is already corrected and, on noisy
    scans, the classifier flips upright lines and ruins them.
    Calls are serialised per instance: rapidocr keeps per-call options on the instance.
    """

    name = "rapidocr"

    def __init__(self, profile: Profile = "fast", *, detect_orientation: bool = True, line_classifier: bool = False,
                 layout: bool = True, gutters: bool = True, threads: int | None = None, text_score: float = 0.5,
                 model_dir: str | Path | None = None,
                 det_model: str | Path | None = None, rec_model: str | Path | None = None,
                 cls_model: str | Path | None = None) -> None:
        if profile not in PROFILES:
            raise InvalidRequest(f"unknown rapidocr profile {profile!r}; choose one of {sorted(PROFILES)}")
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise OCREngineUnavailable(f"rapidocr is not installed: {exc}") from exc
        explicit = {"det": det_model, "rec": rec_model, "cls": cls_model}
        models = find_models(model_dir) if not all(explicit.values()) else {}
        for task, path in explicit.items():
            if path is not None:
                if not Path(path).is_file():
                    raise OCREngineUnavailable(f"rapidocr {task} model not found: {path}")
                models[task] = Path(path)
        self.profile: Profile = profile
        self.model_paths = models
        self._detect_orientation = detect_orientation
        self._line_classifier = line_classifier
        # Layout and table models are shared by every engine of the process (loaded once).
        self._structurer = get_structurer(threads) if layout else None
        self._gutters = gutters  # cut lines the detector ran across a column gutter
        common: dict[str, Any] = {
            "Global.log_level": "error",  # a blank page is not worth a warning
            "Global.text_score": text_score,
            # Explicit paths: rapidocr then never reaches its download code.
            "Det.model_path": str(models["det"]),
            "Rec.model_path": str(models["rec"]),
            "Cls.model_path": str(models["cls"]),
        }
        if threads:
            common["EngineConfig.onnxruntime.intra_op_num_threads"] = int(threads)
        try:
            self._ocr = RapidOCR(params={**common, **PROFILES[profile]})
            self._probe = RapidOCR(params={**common, **_PROBE}) if detect_orientation else None
        except Exception as exc:
            raise OCREngineUnavailable(f"rapidocr failed to initialise: {exc}") from exc
        self._lock = threading.Lock()

    def recognize(self, image: Image.Image) -> PageOCR:
        started = time.perf_counter()
        rgb = paper_rgb(image)
        timings: dict[str, float] = {}
        with self._lock:
            try:
                orientation = 0
                if self._detect_orientation:
                    t0 = time.perf_counter()
                    orientation = detect_orientation(rgb, self._detect, self._read).degrees
                    timings["orientation"] = _ms(time.perf_counter() - t0)
                upright = rotate_clockwise(rgb, orientation)
                scaled, factor = upright, 1.0
                if self.profile == "accurate" and min(upright.size) < _ACCURATE_MIN_SIDE:
                    factor = _ACCURATE_MIN_SIDE / min(upright.size)
                    scaled = upright.resize((round(upright.width * factor), round(upright.height * factor)),
                                            Image.Resampling.BICUBIC)
                result = self._ocr(to_bgr_array(scaled), use_det=True, use_cls=self._line_classifier, use_rec=True)
            except Exception as exc:
                raise EngineError(f"rapidocr failed on a {image.width}x{image.height} page: {exc}") from exc
        for key, seconds in zip(("det", "cls", "rec"), getattr(result, "elapse_list", None) or [], strict=False):
            if isinstance(seconds, float):
                timings[key] = _ms(seconds)
        # rapidocr returns a different output class when nothing was detected; read it duck-typed.
        boxes: Any = getattr(result, "boxes", None)
        txts: Any = getattr(result, "txts", None)
        scores: Any = getattr(result, "scores", None)
        raw: list[RawLine] = []
        if boxes is not None and txts:
            for box, text, score in zip(boxes, txts, scores, strict=True):
                raw.append(RawLine(text=str(text), polygon=[(float(x) / factor, float(y) / factor) for x, y in box],
                                   confidence=float(score)))
        if raw and self._gutters:
            t0 = time.perf_counter()
            with self._lock:
                raw = split_at_gutters(upright, raw, self._read_batch)
            timings["gutters"] = _ms(time.perf_counter() - t0)
        t0 = time.perf_counter()
        page = assemble_page(self.name, raw, orientation, rgb.size, timings, upright, self._structurer)
        page.timings_ms["layout"] = _ms(time.perf_counter() - t0)
        page.timings_ms["total"] = _ms(time.perf_counter() - started)
        return page

    def _detect(self, probe: Image.Image) -> list[list[Point]]:
        assert self._probe is not None
        out = self._probe(to_bgr_array(probe), use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(out, "boxes", None)
        return [] if boxes is None else [[(float(x), float(y)) for x, y in box] for box in boxes]

    def _read(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        readings = []
        for crop in crops:
            out = self._ocr(to_bgr_array(crop), use_det=False, use_cls=False, use_rec=True)
            txts: Any = getattr(out, "txts", None)
            scores: Any = getattr(out, "scores", None)
            readings.append((str(txts[0]), float(scores[0])) if txts else ("", 0.0))
        return readings


    def _read_batch(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        """Line crops read in one batched recognizer call (the recognizer sorts them by width and batches)."""
        load = getattr(self._ocr, "_load_rec_model", None)
        if load is None:  # another rapidocr release: one call per crop
            return self._read(crops)
        from rapidocr.ch_ppocr_rec.typings import TextRecInput

        out = load()(TextRecInput(img=[to_bgr_array(crop) for crop in crops]))
        txts: Any = getattr(out, "txts", None) or ()
        scores: Any = getattr(out, "scores", None) or ()
        return [(str(t), float(s)) for t, s in zip(txts, scores, strict=True)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)
