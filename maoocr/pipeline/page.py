"""One page through the pipeline: complexity analysis → strategy selection → OCR with the chosen engine.

A page whose VLM OCR fails (no VLM configured, engine error, timeout, an answer cut at max_tokens or empty) is
read by PP-OCR with the 'accurate' profile instead, and its strategy_reason says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from PIL import Image

from maoocr.generation.call import describe_failure
from maoocr.ocr.base import OCREngine
from maoocr.pipeline.complexity import analyze_page
from maoocr.pipeline.complexity_models import ComplexityAnalysis
from maoocr.pipeline.strategy import ResourceState, StrategyDecision, select_strategy
from maoocr.protocol.ocr import OCROptions, PageResult

log = logging.getLogger(__name__)

EngineFor = Callable[[str], OCREngine]
Analyze = Callable[[Image.Image, float | None], ComplexityAnalysis]
Select = Callable[[ComplexityAnalysis, ResourceState, str], StrategyDecision]


@dataclass
class PageSteps:
    """The three choices a page goes through; `maoocr.pipeline.steps.build_steps` makes them from settings."""

    engine_for: EngineFor  # "fast" | "accurate" | "vlm" -> engine; raises when it has none for that strategy
    analyze: Analyze = analyze_page
    select: Select = select_strategy


def process_page(image: Image.Image, index: int, page: int, options: OCROptions, resources: ResourceState,
                 steps: PageSteps | EngineFor, dpi: float | None = None) -> PageResult:
    """OCR one page; errors propagate (the caller turns them into a failed page with its reason)."""
    if not isinstance(steps, PageSteps):
        steps = PageSteps(engine_for=steps)
    start = time.perf_counter()
    analysis = steps.analyze(image, dpi)
    decision = steps.select(analysis, resources, options.strategy)
    strategy, reason = decision.strategy, decision.reason
    ocr, extra = None, {}
    if strategy == "vlm":
        vlm_start = time.perf_counter()
        try:
            ocr = steps.engine_for("vlm").recognize(image)
        except Exception as exc:  # whatever went wrong with the VLM, PP-OCR can still read the page
            extra["vlm_failed"] = (time.perf_counter() - vlm_start) * 1000  # time spent before falling back
            failure = describe_failure(exc)
            log.warning("page %d: VLM OCR failed, PP-OCR 'accurate' reads it instead: %s", page, failure)
            strategy, reason = "accurate", f"{reason}; VLM OCR failed ({failure}) -> fell back to 'accurate'"
    if ocr is None:
        ocr = steps.engine_for(strategy).recognize(image)
    timings = {"analysis": analysis.analysis_ms, **extra, **ocr.timings_ms,
               "page_total": (time.perf_counter() - start) * 1000}
    return PageResult(index=index, page=page, status="succeeded", text=ocr.text, lines=ocr.lines,
                      complexity=analysis, strategy=strategy, strategy_reason=reason,
                      engine=ocr.engine, orientation=ocr.orientation, width=ocr.width, height=ocr.height,
                      timings_ms=timings)
