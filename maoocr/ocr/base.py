"""The one OCR engine interface, its errors, and the page assembly every line-based backend shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from maoocr.documents import paper_rgb
from maoocr.errors import ServiceUnavailable
from maoocr.ocr.page_builder import PageStructurer, build_page
from maoocr.ocr.types import PageOCR, Point


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
                  timings_ms: dict[str, float], upright: Image.Image | None = None,
                  structurer: PageStructurer | None = None) -> PageOCR:
    """Type and order upright lines into blocks (with the layout and table models when given), map their
    polygons back to the input image and join the text."""
    return build_page(engine, raw, orientation, input_size, timings_ms, upright, structurer)
