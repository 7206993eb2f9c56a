"""The one OCR engine interface, its errors, and the page assembly every line-based backend shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from maoocr.documents import paper_rgb
from maoocr.errors import ServiceUnavailable
from maoocr.ocr.geometry import bounding_box, upright_to_input
from maoocr.ocr.reading_order import order_lines
from maoocr.ocr.types import OCRLine, PageOCR, Point


class OCREngineUnavailable(ServiceUnavailable):
    """The requested OCR backend cannot run here (package or model files missing). Raised at construction."""


class OCREngine(ABC):
    """Turns one page image into lines of text in reading order.

    Implementations must be safe to call from several threads (serialising internally if they must) and must
    never download anything at recognition time.
    """

    name: str = "abstract"

    @abstractmethod
    def recognize(self, image: Image.Image) -> PageOCR:
        """OCR one page. The page may be rotated by a multiple of 90 degrees; `PageOCR.orientation` says how."""

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing that needs closing
        """Release resources early; the engine must not be used afterwards."""


@dataclass
class RawLine:
    """A line as a backend recognised it on the upright page (before ordering and mapping back)."""

    text: str
    polygon: Sequence[Point]
    confidence: float


def to_bgr_array(image: Image.Image) -> np.ndarray:
    """The layout OpenCV-based backends expect (rapidocr and PaddleX treat 3-channel arrays as BGR)."""
    return np.ascontiguousarray(np.asarray(paper_rgb(image))[:, :, ::-1])


def assemble_page(engine: str, raw: Sequence[RawLine], orientation: int, input_size: tuple[int, int],
                  timings_ms: dict[str, float]) -> PageOCR:
    """Order upright lines into blocks, map their polygons back to the input image and join the text."""
    kept = [line for line in raw if line.text.strip()]
    blocks = order_lines([bounding_box(line.polygon) for line in kept])
    lines: list[OCRLine] = []
    texts: list[str] = []
    for block_index, block in enumerate(blocks):
        block_texts = []
        for i in block:
            line = kept[i]
            polygon = upright_to_input(line.polygon, orientation, input_size)
            lines.append(OCRLine(text=line.text.strip(), polygon=[(round(x, 1), round(y, 1)) for x, y in polygon],
                                 confidence=min(1.0, max(0.0, float(line.confidence))), block=block_index))
            block_texts.append(line.text.strip())
        texts.append("\n".join(block_texts))
    return PageOCR(lines=lines, text="\n\n".join(texts), engine=engine, orientation=orientation,
                   width=input_size[0], height=input_size[1], timings_ms=timings_ms)
