"""The page steps a configuration asks for: heuristic or VLM analysis, rule or LLM strategy selection, PP-OCR
engines and the VLM OCR backend — all model calls through one injected `Generate` callable."""

from __future__ import annotations

from functools import partial

from maoocr.config import Settings
from maoocr.errors import MaoOCRError
from maoocr.generation.call import Generate
from maoocr.ocr.base import OCREngine
from maoocr.pipeline.page import PageSteps
from maoocr.pipeline.strategy import DEFAULT_VLM_QUEUE, select_strategy


def vlm_queue(settings: Settings) -> str:
    """The queue whose depth tells how busy the VLM is."""
    return settings.queues.llm_queue(settings.ocr.vlm_model) if settings.ocr.vlm_model else DEFAULT_VLM_QUEUE


def build_steps(settings: Settings, generate: Generate | None, engine_threads: int | None = None,
                structure: bool = True) -> PageSteps:
    """Steps from `settings.ocr`. Without `generate` (no way to reach a model) the model-based options are off:
    analysis is heuristic, selection by rules, and 'vlm' pages fall back to 'accurate'. `structure=False` leaves
    the layout and table models unloaded (a process that only runs the model steps)."""
    ocr = settings.ocr
    rules = dict(vlm_queue=vlm_queue(settings), vlm_min_free_mb=ocr.vlm_min_free_mb, vlm_max_queue=ocr.vlm_max_queue)
    vlm_engine: OCREngine | None = None
    if ocr.vlm_model and generate is not None:
        from maoocr.ocr.vlm_engine import VLMOCREngine

        vlm_engine = VLMOCREngine(ocr.vlm_model, generate, max_tokens=ocr.vlm_max_tokens,
                                  max_side=ocr.vlm_max_side, timeout_s=ocr.vlm_timeout_s,
                                  ignore_eos=ocr.vlm_ignore_eos)

    def engine_for(strategy: str) -> OCREngine:
        from maoocr.ocr.registry import get_ocr_engine

        if strategy == "vlm":
            if vlm_engine is None:
                raise MaoOCRError("no VLM OCR backend here (ocr.vlm_model is not set)", code="vlm_unavailable")
            return vlm_engine
        if ocr.engine == "rapidocr":
            return get_ocr_engine("rapidocr", profile="accurate" if strategy == "accurate" else "fast",
                                  threads=engine_threads)
        return get_ocr_engine(ocr.engine)

    from maoocr.ocr.page_builder import get_structurer

    steps = PageSteps(engine_for=engine_for, select=partial(select_strategy, **rules),
                      structurer=get_structurer(engine_threads) if structure else None,
                      has_vlm=vlm_engine is not None)
    if generate is None:
        return steps
    steps.model_decides = ocr.analyzer == "vlm" or ocr.selector == "llm"
    if ocr.analyzer == "vlm":
        from maoocr.pipeline.vlm_analysis import VLMComplexityAnalyzer

        model = ocr.analyzer_model or ocr.vlm_model
        assert model is not None, "load_settings refuses analyzer: vlm without a model"
        steps.analyze = VLMComplexityAnalyzer(model, generate, timeout_s=ocr.assist_timeout_s).analyze
    if ocr.selector == "llm":
        from maoocr.pipeline.llm_strategy import LLMStrategySelector

        steps.select = LLMStrategySelector(ocr.selector_model or settings.default_model, generate,
                                           timeout_s=ocr.assist_timeout_s, **rules).select
    return steps
