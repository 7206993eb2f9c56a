"""OCR engines behind one interface (`OCREngine.recognize(image) -> PageOCR`), with a registry of backends."""

from maoocr.ocr.base import OCREngine, OCREngineUnavailable
from maoocr.ocr.metrics import cer, edit_distance
from maoocr.ocr.registry import (
    available_ocr_engines,
    clear_ocr_engine_cache,
    create_ocr_engine,
    get_default_ocr_engine,
    get_ocr_engine,
    register_ocr_engine,
)
from maoocr.ocr.types import OCRLine, PageOCR

__all__ = [
    "OCREngine",
    "OCREngineUnavailable",
    "OCRLine",
    "PageOCR",
    "available_ocr_engines",
    "cer",
    "clear_ocr_engine_cache",
    "create_ocr_engine",
    "edit_distance",
    "get_default_ocr_engine",
    "get_ocr_engine",
    "register_ocr_engine",
]
