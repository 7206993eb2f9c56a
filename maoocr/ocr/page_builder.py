"""Recognised lines of an upright page → a `PageOCR` with typed blocks in reading order, tables and text.

Every line-based source goes through here: PP-OCR lines and a PDF's own text layer alike. The layout and table
models are optional parts: without them (or when they fail) the page is ordered from its lines alone and
`layout_note` says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image

from maoocr.ocr.geometry import bounding_box, upright_to_input
from maoocr.ocr.layout import LayoutRegion
from maoocr.ocr.page_structure import Unit, structure_page
from maoocr.ocr.page_text import block_text, page_text
from maoocr.ocr.types import Block, Box, OCRLine, PageOCR, Point, Table

if TYPE_CHECKING:
    from maoocr.ocr.base import RawLine

log = logging.getLogger(__name__)


class PageStructurer:
    """The layout model and the table recogniser of this process; either may be missing."""

    def __init__(self, layout: object | None, tables: object | None, note: str | None = None) -> None:
        self.layout = layout  # maoocr.ocr.layout.LayoutModel
        self.tables = tables  # maoocr.ocr.tables.TableRecognizer
        self.note = note  # why a part is missing

    def regions(self, upright: Image.Image) -> tuple[list[LayoutRegion], str | None]:
        if self.layout is None:
            return [], self.note or "no layout model"
        try:
            return self.layout.detect(upright), None  # type: ignore[attr-defined]
        except Exception as exc:  # the page is still readable in line order
            log.warning("layout model failed, ordering lines alone: %s", exc)
            return [], f"layout model failed ({type(exc).__name__}: {exc}); lines ordered without it"

    def table(self, upright: Image.Image, box: Box, words: list[tuple[str, Box]]) -> tuple[Table | None, str | None]:
        if self.tables is None or not words:
            return None, None
        x0, y0 = int(max(0, box[0])), int(max(0, box[1]))
        crop = upright.crop((x0, y0, max(x0 + 1, int(min(upright.width, box[2]))),
                             max(y0 + 1, int(min(upright.height, box[3])))))
        local = [(text, (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0)) for text, b in words]
        try:
            table = self.tables.recognize(crop, local)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("table recognition failed, the table is kept as lines: %s", exc)
            return None, f"table recognition failed ({type(exc).__name__}: {exc})"
        for cell in table.cells:
            if cell.box is not None:
                cell.box = (cell.box[0] + x0, cell.box[1] + y0, cell.box[2] + x0, cell.box[3] + y0)
        return table, None


_STRUCTURERS: dict[int | None, PageStructurer] = {}
_STRUCTURERS_LOCK = threading.Lock()


def get_structurer(threads: int | None = None) -> PageStructurer:
    """The process's layout and table models, loaded once; a missing model is noted, not fatal."""
    with _STRUCTURERS_LOCK:
        if threads not in _STRUCTURERS:
            notes = []
            layout = tables = None
            try:
                from maoocr.ocr.layout import get_layout_model

                layout = get_layout_model(threads)
            except Exception as exc:
                notes.append(f"layout model unavailable ({exc})")
            try:
                from maoocr.ocr.tables import get_table_recognizer

                tables = get_table_recognizer(threads)
            except Exception as exc:
                notes.append(f"table model unavailable ({exc})")
            if notes:
                log.warning("page structure: %s", "; ".join(notes))
            _STRUCTURERS[threads] = PageStructurer(layout, tables, "; ".join(notes) or None)
        return _STRUCTURERS[threads]


def build_page(engine: str, raw: Sequence[RawLine], orientation: int, input_size: tuple[int, int],
               timings_ms: dict[str, float], upright: Image.Image | None = None,
               structurer: PageStructurer | None = None) -> PageOCR:
    """Type, order and join the upright lines `raw`; map every box back to the input image (`input_size`)."""
    kept = [line for line in raw if line.text.strip()]
    boxes = [bounding_box(line.polygon) for line in kept]
    texts = [line.text.strip() for line in kept]
    regions: list[LayoutRegion] = []
    notes: list[str] = []
    if upright is not None and structurer is not None and (kept or structurer.layout is not None):
        started = time.perf_counter()
        regions, note = structurer.regions(upright)
        timings_ms["layout_model"] = _ms(started)
        if note:
            notes.append(note)
    started = time.perf_counter()
    layout = structure_page(boxes, texts, regions, upright.size if upright is not None else input_size)
    timings_ms["reading_order"] = _ms(started)

    def to_input(points: Sequence[Point]) -> list[Point]:
        return [(round(x, 1), round(y, 1)) for x, y in upright_to_input(points, orientation, input_size)]

    lines: list[OCRLine] = []
    blocks: list[Block] = []
    table_ms = 0.0
    for index, unit in enumerate(layout.units):
        table = None
        if unit.type == "table" and upright is not None and structurer is not None:
            started = time.perf_counter()
            table, note = structurer.table(upright, unit.box, [(texts[i], boxes[i]) for i in unit.lines])
            table_ms += _ms(started)
            if note:
                notes.append(note)
            if table is not None:
                for cell in table.cells:
                    if cell.box is not None:
                        cell.box = _box(to_input(_corners(cell.box)))
        for i in unit.lines:
            lines.append(OCRLine(text=texts[i], polygon=to_input(kept[i].polygon),
                                 confidence=min(1.0, max(0.0, float(kept[i].confidence))), block=index))
        blocks.append(Block(index=index, type=unit.type, box=_box(to_input(_corners(unit.box))),
                            text=block_text(unit.type, [texts[i] for i in unit.lines], table), table=table,
                            source=_source(unit, engine)))
    if table_ms:
        timings_ms["tables"] = round(table_ms, 1)
    return PageOCR(lines=lines, text=page_text(blocks), engine=engine, orientation=orientation,
                   width=input_size[0], height=input_size[1], timings_ms=timings_ms, blocks=blocks,
                   columns=layout.columns, layout_note="; ".join(notes) or None)


def _source(unit: Unit, engine: str) -> str:
    if engine == "text_layer":
        return "text_layer"
    return "layout" if unit.region is not None else "lines"


def _corners(box: Box) -> list[Point]:
    return [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])]


def _box(points: Sequence[Point]) -> Box:
    x0, y0, x1, y1 = bounding_box(points)
    return (round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 1)
