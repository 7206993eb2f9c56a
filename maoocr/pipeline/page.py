"""One page through the pipeline: its PDF text layer when that can be trusted, else complexity analysis →
strategy selection → OCR with the chosen engine; then the page's text and markdown from its typed blocks.

A page whose VLM OCR fails (no VLM configured, engine error, timeout, an answer cut at max_tokens or empty) is
read by PP-OCR with the 'accurate' profile instead, and its strategy_reason says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from PIL import Image

from maoocr.generation.call import describe_failure
from maoocr.ocr.base import OCREngine, RawLine, assemble_page
from maoocr.ocr.page_builder import PageStructurer
from maoocr.ocr.page_text import page_markdown, page_text
from maoocr.ocr.types import PageOCR
from maoocr.pipeline.complexity import analyze_page
from maoocr.pipeline.complexity_models import ComplexityAnalysis
from maoocr.pipeline.strategy import ResourceState, StrategyDecision, select_strategy
from maoocr.protocol.ocr import OCROptions, PageDecision, PageResult

if TYPE_CHECKING:
    from maoocr.documents import LoadedDocument
    from maoocr.ocr.text_layer import TextLayerPage

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
    structurer: PageStructurer | None = None  # layout and table models for text-layer pages
    model_decides: bool = False  # the analysis or the selection asks a model (a VLM rates, an LLM selects)
    has_vlm: bool = False  # engine_for("vlm") reaches a VLM


def process_document_page(doc: LoadedDocument, index: int, options: OCROptions, resources: ResourceState,
                          steps: PageSteps | EngineFor) -> PageResult:
    """Selected page `index` of `doc`: rendered, with its own DPI and (PDFs) its text layer."""
    image = doc.render_page(index)
    layer = doc.text_layer(index) if doc.format == "pdf" else None
    return process_page(image, index, doc.page_numbers[index], options, resources, steps,
                        dpi=doc.page_dpi(index), text_layer=layer)


def process_page(image: Image.Image, index: int, page: int, options: OCROptions, resources: ResourceState,
                 steps: PageSteps | EngineFor, dpi: float | None = None,
                 text_layer: TextLayerPage | None = None) -> PageResult:
    """OCR one page in this process, model steps included; errors propagate (the caller turns them into a failed
    page with its reason). The OCR worker runs the same steps split between two queues (`maoocr.pipeline.ocr_job`)."""
    if not isinstance(steps, PageSteps):
        steps = PageSteps(engine_for=steps)
    start = time.perf_counter()
    used, note = layer_verdict(text_layer, options)
    if used:
        return text_layer_result(image, text_layer, index, page, options, steps, start)
    decision = decide_page(image, dpi, options, resources, steps, note)
    ocr = None
    if decision.strategy == "vlm":
        ocr, decision = read_with_vlm(image, decision, steps)
    if ocr is None:
        ocr = read_with_ppocr(image, decision, steps)
    return page_result(ocr, index, page, options, decision, start)


def layer_verdict(text_layer: TextLayerPage | None, options: OCROptions) -> tuple[bool, str]:
    """(whether the PDF text layer reads the page, the note a page OCR'd despite a layer carries in its reason)."""
    if text_layer is None:
        return False, ""
    unused = _unused_because(text_layer, options)
    return (True, "") if unused is None else (False, f"text layer not used: {unused}; ")


def text_layer_result(image: Image.Image, layer: TextLayerPage, index: int, page: int, options: OCROptions,
                      steps: PageSteps, start: float) -> PageResult:
    return _result(read_text_layer_page(image, layer, steps), index, page, options, None, "text_layer",
                   layer.reason, start)


def decide_page(image: Image.Image, dpi: float | None, options: OCROptions, resources: ResourceState,
                steps: PageSteps, note: str = "") -> PageDecision:
    analysis = steps.analyze(image, dpi)
    decision = steps.select(analysis, resources, options.strategy)
    return PageDecision(analysis=analysis, strategy=decision.strategy, reason=note + decision.reason)


def read_with_vlm(image: Image.Image, decision: PageDecision, steps: PageSteps) -> tuple[PageOCR | None,
                                                                                          PageDecision]:
    """The VLM's reading of the page turned upright; on any failure (None, the decision for PP-OCR 'accurate',
    saying why): whatever went wrong with the VLM, PP-OCR can still read the page."""
    started = time.perf_counter()
    try:
        return steps.engine_for("vlm").recognize(upright(image, decision.analysis)), decision
    except Exception as exc:
        return None, vlm_fell_back(decision, exc, (time.perf_counter() - started) * 1000)


def vlm_fell_back(decision: PageDecision, exc: BaseException, spent_ms: float) -> PageDecision:
    """The decision for PP-OCR 'accurate' after the VLM failed, saying why."""
    failure = describe_failure(exc)
    log.warning("VLM OCR failed, PP-OCR 'accurate' reads the page instead: %s", failure)
    return decision.model_copy(update={
        "strategy": "accurate", "vlm_failed_ms": spent_ms,
        "reason": f"{decision.reason}; VLM OCR failed ({failure}) -> fell back to 'accurate'"})


def upright(image: Image.Image, analysis: ComplexityAnalysis) -> Image.Image:
    """The page turned upright for a VLM, which reads turned text badly. A sideways page is turned even when
    which way up is undecided: level lines read better than vertical ones."""
    features = analysis.features
    turned = features.orientation % 180 == 90 or features.orientation_confidence > 0.5
    return image.rotate(-features.orientation, expand=True) if features.orientation and turned else image


def read_with_ppocr(image: Image.Image, decision: PageDecision, steps: PageSteps) -> PageOCR:
    return steps.engine_for(decision.strategy).recognize(image)


def page_result(ocr: PageOCR, index: int, page: int, options: OCROptions, decision: PageDecision,
                start: float) -> PageResult:
    failed = {} if decision.vlm_failed_ms is None else {"vlm_failed": decision.vlm_failed_ms}
    ocr.timings_ms = {"analysis": decision.analysis.analysis_ms, **failed, **ocr.timings_ms}
    return _result(ocr, index, page, options, decision.analysis, decision.strategy, decision.reason, start)


def _unused_because(layer: TextLayerPage, options: OCROptions) -> str | None:
    """Why the page is OCR'd although it has a text layer; None when the layer reads the page."""
    if not layer.trusted:
        return layer.reason
    if options.strategy != "auto":
        return f"OCR strategy '{options.strategy}' requested"
    if layer.orientation:  # layout and reading order work on upright pages; OCR turns the page upright first
        return f"its text runs turned by {layer.orientation} degrees"
    return None


def read_text_layer_page(image: Image.Image, layer: TextLayerPage, steps: PageSteps) -> PageOCR:
    """The page from its PDF text layer, through the same layout, reading order and tables as OCR'd pages;
    image regions big enough to hold text (a mixed page) are OCR'd and their lines joined in."""
    started = time.perf_counter()
    lines = list(layer.lines)
    timings: dict[str, float] = {}
    if layer.image_regions:
        engine = steps.engine_for("fast")
        for box in layer.image_regions:
            x0, y0 = int(max(0, box[0])), int(max(0, box[1]))
            crop = image.crop((x0, y0, max(x0 + 1, int(box[2])), max(y0 + 1, int(box[3]))))
            for line in engine.recognize(crop).lines:
                lines.append(RawLine(line.text, [(x + x0, y + y0) for x, y in line.polygon], line.confidence))
        timings["image_regions_ocr"] = round((time.perf_counter() - started) * 1000, 1)
    return assemble_page("text_layer", lines, 0, image.size, timings, image, steps.structurer)


def _result(ocr: PageOCR, index: int, page: int, options: OCROptions, analysis: ComplexityAnalysis | None,
            strategy: str, reason: str, start: float) -> PageResult:
    keep = options.keep_headers
    timings = {**ocr.timings_ms, "page_total": (time.perf_counter() - start) * 1000}
    text = page_text(ocr.blocks, keep_running=True) if keep and ocr.blocks else ocr.text
    markdown = page_markdown(ocr.blocks, ocr.lines, keep_running=keep) if ocr.blocks else ocr.text
    return PageResult(index=index, page=page, status="succeeded", text=text, markdown=markdown, lines=ocr.lines,
                      blocks=ocr.blocks, columns=ocr.columns, layout_note=ocr.layout_note, complexity=analysis,
                      strategy=strategy, strategy_reason=reason, engine=ocr.engine, orientation=ocr.orientation,
                      width=ocr.width, height=ocr.height, timings_ms=timings)
