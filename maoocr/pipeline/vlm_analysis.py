"""VLM complexity analysis: a vision model rates the page, JSON-constrained and validated by pydantic; on any
failure (engine error, timeout, cut or invalid JSON, out-of-range values) the heuristic analysis stands, with
`fallback_reason` saying why.

The heuristic analysis always runs first (~20 ms): its features are kept either way, and it is the fallback.
"""

from __future__ import annotations

import logging
import time

from PIL import Image
from pydantic import ValidationError

from maoocr.generation.call import Generate, answer_text, describe_failure, image_question
from maoocr.pipeline.complexity import COMPLEX_FROM, SIMPLE_BELOW, analyze_page
from maoocr.pipeline.complexity_models import ComplexityAnalysis, Level, PageRating
from maoocr.protocol.generation import GenerationParams

log = logging.getLogger(__name__)

RATING_SCHEMA = PageRating.model_json_schema()
RATE = ("You judge how hard this page image is for OCR. Answer with one JSON object: "
        "score (0 to 1: 0 = clean, single-column printed text; about 0.3 = two columns, light noise or skew; "
        "0.6 and above = tables, three or more columns, handwriting, or a heavily degraded scan), "
        "columns (number of text columns), has_table, handwriting, degraded (noisy, blurred, low-contrast, skewed "
        "or rotated) and reason (one short sentence).")


def level_for(score: float) -> Level:
    """The same cut-offs as the heuristic score, so levels mean one thing whoever rated the page."""
    return "simple" if score < SIMPLE_BELOW else ("medium" if score < COMPLEX_FROM else "complex")


class VLMComplexityAnalyzer:
    """`analyze(image, dpi)` like `analyze_page`, with score and level from a vision model when it answers well."""

    def __init__(self, model: str, generate: Generate, *, max_tokens: int = 256, max_side: int = 1024,
                 timeout_s: float = 60.0) -> None:
        self.model = model
        self.generate = generate
        self.max_tokens = max_tokens
        self.max_side = max_side
        self.timeout_s = timeout_s

    def rate(self, image: Image.Image) -> PageRating:
        """The model's rating; raises on any failure (the caller decides what to fall back to)."""
        params = GenerationParams(model=self.model, messages=image_question(image, RATE, self.max_side),
                                  max_tokens=self.max_tokens, temperature=0.0, json_schema=RATING_SCHEMA)
        text = answer_text(self.generate(params, self.timeout_s), f"VLM {self.model!r}")
        return PageRating.model_validate_json(text)

    def analyze(self, image: Image.Image, dpi: float | None = None) -> ComplexityAnalysis:
        heuristic = analyze_page(image, dpi=dpi)
        start = time.perf_counter()
        try:
            rating = self.rate(image)
        except ValidationError as exc:
            failure = f"invalid rating: {_first_error(exc)}"
        except Exception as exc:  # any failure of the model is a reason to trust the heuristic instead
            failure = describe_failure(exc)
        else:
            return heuristic.model_copy(update=dict(
                score=rating.score, level=level_for(rating.score), analyzer=f"vlm:{self.model}", rating=rating,
                analysis_ms=round(heuristic.analysis_ms + (time.perf_counter() - start) * 1000.0, 3)))
        log.warning("VLM analysis by %s fell back to the heuristic: %s", self.model, failure)
        return heuristic.model_copy(update=dict(
            fallback_reason=f"VLM analysis by {self.model!r} failed ({failure}); heuristic result used",
            analysis_ms=round(heuristic.analysis_ms + (time.perf_counter() - start) * 1000.0, 3)))


def _first_error(exc: ValidationError) -> str:
    """e.g. "score: Input should be less than or equal to 1 (got 3.5)" — short enough for a reason line."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "answer"
    got = repr(first.get("input"))
    return f"{where}: {first['msg']} (got {got[:80]}{'…' if len(got) > 80 else ''})"


# The name it is also imported by (`from maoocr.vllm import VLLMComplexityAnalyzer`).
VLLMComplexityAnalyzer = VLMComplexityAnalyzer
