"""One page through the pipeline: complexity analysis → strategy selection → OCR with the chosen engine."""

from __future__ import annotations

import time
from typing import Callable

from PIL import Image

from maoocr.ocr.base import OCREngine
from maoocr.pipeline.complexity import analyze_page
from maoocr.pipeline.strategy import ResourceState, select_strategy
from maoocr.protocol.ocr import OCROptions, PageResult

EngineFor = Callable[[str], OCREngine]


def process_page(image: Image.Image, index: int, page: int, options: OCROptions, resources: ResourceState,
                 engine_for: EngineFor, dpi: float | None = None) -> PageResult:
    """OCR one page; errors propagate (the caller turns them into a failed page with its reason)."""
    start = time.perf_counter()
    analysis = analyze_page(image, dpi=dpi)
    decision = select_strategy(analysis, resources, options.strategy)
    engine = engine_for(decision.strategy)
    ocr = engine.recognize(image)
    timings = {"analysis": analysis.analysis_ms, **ocr.timings_ms,
               "page_total": (time.perf_counter() - start) * 1000}
    return PageResult(index=index, page=page, status="succeeded", text=ocr.text, lines=ocr.lines,
                      complexity=analysis, strategy=decision.strategy, strategy_reason=decision.reason,
                      engine=ocr.engine, orientation=ocr.orientation, width=ocr.width, height=ocr.height,
                      timings_ms=timings)

