"""OCR strategy selection: pick fast, accurate or vlm for a page from its complexity and the current resources.

Strategies: "fast" = PP-OCR mobile/default models; "accurate" = PP-OCR with higher-resolution detection / server
models; "vlm" = a vision-language model through the GPU engine.

Rules, first match wins:
1. An explicit request ("fast", "accurate", "vlm") is honoured, unless it is impossible: "vlm" while no VLM is
   available falls back to "accurate" and the reason says so. A VLM that is available but busy (low GPU memory,
   long queue) does not override an explicit "vlm": the caller asked for it and the job waits its turn.
2. "auto" and a simple page -> "fast".
3. "auto" and a medium page -> "accurate".
4. "auto" and a complex page (tables, many columns, heavy noise) -> "vlm" when all of: a VLM is available, some
   GPU has >= vlm_min_free_mb MiB free, and the VLM queue (`queue_depths[vlm_queue]`, 0 when absent) holds fewer
   than vlm_max_queue jobs. Otherwise "accurate", and the reason names every resource that was lacking.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from maoocr.errors import InvalidRequest
from maoocr.pipeline.complexity_models import ComplexityAnalysis

Strategy = Literal["fast", "accurate", "vlm"]
Requested = Literal["auto", "fast", "accurate", "vlm"]

DEFAULT_VLM_QUEUE = "maoocr.llm.vlm"


class ResourceState(BaseModel):
    """What the selector may use right now."""

    model_config = ConfigDict(extra="forbid")

    gpu_free_mb: list[NonNegativeInt] = Field(default_factory=list, description="free MiB per GPU; empty: none")
    queue_depths: dict[str, NonNegativeInt] = Field(default_factory=dict, description="jobs waiting per queue")
    vlm_available: bool = False
    vlm_note: str | None = Field(None, description="why no VLM is available (e.g. none configured), for reasons")


class StrategyDecision(BaseModel):
    strategy: Strategy
    reason: str = Field(description="human-readable, with the numbers that decided it")
    requested: Requested
    selector: str = Field("rules", description="'rules', or 'llm:<model>' when a language model chose")


def select_strategy(analysis: ComplexityAnalysis, resources: ResourceState, requested: Requested = "auto",
                    vlm_queue: str = DEFAULT_VLM_QUEUE, vlm_min_free_mb: int = 4096,
                    vlm_max_queue: int = 64) -> StrategyDecision:
    """Choose the OCR strategy for one page by the rules in the module docstring."""
    if requested not in get_args(Requested):
        raise InvalidRequest(f"unknown OCR strategy {requested!r}; expected one of {', '.join(get_args(Requested))}")
    if vlm_min_free_mb < 0 or vlm_max_queue < 1:
        raise InvalidRequest(f"vlm_min_free_mb must be >= 0 and vlm_max_queue >= 1, got {vlm_min_free_mb} and "
                             f"{vlm_max_queue}")

    def decide(strategy: Strategy, reason: str) -> StrategyDecision:
        return StrategyDecision(strategy=strategy, reason=reason, requested=requested)

    if requested != "auto":
        if requested == "vlm" and not resources.vlm_available:
            note = f" ({resources.vlm_note})" if resources.vlm_note else ""
            return decide("accurate", f"requested 'vlm' but no VLM is available{note}; falling back to 'accurate'")
        return decide(requested, f"requested '{requested}'")

    page = _describe(analysis)
    if analysis.level == "simple":
        return decide("fast", f"{page} -> fast")
    if analysis.level == "medium":
        return decide("accurate", f"{page} -> accurate")

    lacking = []
    if not resources.vlm_available:
        lacking.append("no VLM is available" + (f" ({resources.vlm_note})" if resources.vlm_note else ""))
    best_free = max(resources.gpu_free_mb, default=None)
    if best_free is None:
        lacking.append("no GPU")
    elif best_free < vlm_min_free_mb:
        lacking.append(f"no GPU has >= {vlm_min_free_mb} MiB free (most free: {best_free} MiB)")
    depth = resources.queue_depths.get(vlm_queue, 0)
    if depth >= vlm_max_queue:
        lacking.append(f"VLM queue '{vlm_queue}' holds {depth} jobs (limit < {vlm_max_queue})")
    if lacking:
        return decide("accurate", f"{page} but {'; '.join(lacking)} -> accurate")
    return decide("vlm", f"{page}; GPU with {best_free} MiB free (>= {vlm_min_free_mb}), VLM queue "
                         f"'{vlm_queue}' depth {depth} (< {vlm_max_queue}) -> vlm")


def _describe(analysis: ComplexityAnalysis) -> str:
    """e.g. "page is complex (score 0.69; table 0.65, columns 0.35)": the level and the cues that drove it."""
    top = sorted(analysis.contributions.items(), key=lambda item: (-item[1], item[0]))[:3]
    cues = "; " + ", ".join(f"{name} {value:.2f}" for name, value in top) if top else ""
    blank = ", blank page" if analysis.features.is_blank else ""
    by = ""
    if analysis.rating is not None:  # the score is the model's: its own words explain it, not the heuristic cues
        by, cues = f" by {analysis.analyzer}", f": {analysis.rating.reason!r}"
    return f"page is {analysis.level} (score {analysis.score:.2f}{by}{cues}{blank})"
