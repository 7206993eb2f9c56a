"""Strategy selection rules: explicit requests, auto by complexity level, and every VLM fall-back reason."""

from __future__ import annotations

import functools

import pytest
from PIL import Image
from pydantic import ValidationError

from bench.complexity_bench import make_page
from maoocr.errors import InvalidRequest
from maoocr.pipeline.complexity import ComplexityAnalysis, analyze_page
from maoocr.pipeline.strategy import ResourceState, select_strategy

READY = ResourceState(gpu_free_mb=[2000, 30000], queue_depths={"maoocr.llm.vlm": 3}, vlm_available=True)


@functools.lru_cache(maxsize=None)
def _blank_analysis() -> ComplexityAnalysis:
    return analyze_page(Image.new("L", (300, 400), 255))


def analysis(level: str, score: float, **contributions: float) -> ComplexityAnalysis:
    """An analysis with the given verdict; the features (of a blank page) do not matter to the rules."""
    return _blank_analysis().model_copy(update={"level": level, "score": score, "contributions": contributions})


SIMPLE = analysis("simple", 0.1)
MEDIUM = analysis("medium", 0.41, columns=0.35, skew=0.06)
COMPLEX = analysis("complex", 0.69, table=0.65, columns=0.35)


@pytest.mark.parametrize("requested", ["fast", "accurate", "vlm"])
@pytest.mark.parametrize("page", [SIMPLE, COMPLEX])
def test_explicit_request_wins(requested: str, page: ComplexityAnalysis) -> None:
    d = select_strategy(page, READY, requested=requested)
    assert (d.strategy, d.requested) == (requested, requested)
    assert requested in d.reason


def test_explicit_vlm_without_vlm_falls_back_to_accurate() -> None:
    d = select_strategy(SIMPLE, READY.model_copy(update={"vlm_available": False}), requested="vlm")
    assert (d.strategy, d.requested) == ("accurate", "vlm")
    assert "no VLM is available" in d.reason


def test_explicit_vlm_is_not_refused_for_a_busy_gpu() -> None:
    busy = ResourceState(gpu_free_mb=[10], queue_depths={"maoocr.llm.vlm": 500}, vlm_available=True)
    assert select_strategy(SIMPLE, busy, requested="vlm").strategy == "vlm"


def test_auto_simple_is_fast() -> None:
    d = select_strategy(SIMPLE, READY)
    assert (d.strategy, d.requested) == ("fast", "auto")
    assert "simple" in d.reason and "0.10" in d.reason


def test_auto_medium_is_accurate() -> None:
    d = select_strategy(MEDIUM, READY)
    assert d.strategy == "accurate"
    assert "medium" in d.reason and "0.41" in d.reason and "columns 0.35" in d.reason


def test_auto_complex_with_resources_is_vlm() -> None:
    d = select_strategy(COMPLEX, READY)
    assert d.strategy == "vlm"
    assert "30000 MiB" in d.reason and "depth 3" in d.reason and "table 0.65" in d.reason


@pytest.mark.parametrize(("resources", "expected"), [
    (ResourceState(gpu_free_mb=[30000], vlm_available=False), ["no VLM is available"]),
    (ResourceState(gpu_free_mb=[], vlm_available=True), ["no GPU"]),
    (ResourceState(gpu_free_mb=[1000, 4095], vlm_available=True), [">= 4096 MiB free", "most free: 4095 MiB"]),
    (ResourceState(gpu_free_mb=[30000], queue_depths={"maoocr.llm.vlm": 64}, vlm_available=True),
     ["'maoocr.llm.vlm' holds 64 jobs", "< 64"]),
])
def test_auto_complex_falls_back_to_accurate_naming_the_lack(resources: ResourceState, expected: list[str]) -> None:
    d = select_strategy(COMPLEX, resources)
    assert d.strategy == "accurate"
    for text in expected:
        assert text in d.reason


def test_every_lacking_resource_is_named() -> None:
    d = select_strategy(COMPLEX, ResourceState(queue_depths={"maoocr.llm.vlm": 99}))
    assert d.strategy == "accurate"
    assert "no VLM is available" in d.reason and "no GPU" in d.reason and "holds 99 jobs" in d.reason


def test_thresholds_are_inclusive_of_free_memory_and_exclusive_of_queue_depth() -> None:
    edge = ResourceState(gpu_free_mb=[4096], queue_depths={"maoocr.llm.vlm": 63}, vlm_available=True)
    assert select_strategy(COMPLEX, edge).strategy == "vlm"
    assert select_strategy(COMPLEX, edge, vlm_min_free_mb=4097).strategy == "accurate"
    assert select_strategy(COMPLEX, edge, vlm_max_queue=63).strategy == "accurate"


def test_queue_name_is_configurable_and_absent_queue_counts_as_empty() -> None:
    resources = ResourceState(gpu_free_mb=[8000], queue_depths={"maoocr.llm.vlm": 500, "gpu1.vlm": 2},
                              vlm_available=True)
    assert select_strategy(COMPLEX, resources).strategy == "accurate"
    d = select_strategy(COMPLEX, resources, vlm_queue="gpu1.vlm")
    assert d.strategy == "vlm" and "'gpu1.vlm' depth 2" in d.reason
    assert select_strategy(COMPLEX, resources, vlm_queue="other").strategy == "vlm"


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidRequest):
        select_strategy(SIMPLE, READY, requested="best")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        select_strategy(SIMPLE, READY, vlm_max_queue=0)
    with pytest.raises(ValidationError):
        ResourceState(gpu_free_mb=[-1])
    with pytest.raises(ValidationError):
        ResourceState(queue_depths={"q": -3})
    with pytest.raises(ValidationError):
        ResourceState(gpu_free=[1000])  # type: ignore[call-arg]


def test_end_to_end_with_analysed_pages() -> None:
    table = analyze_page(make_page("table", 11))
    plain = analyze_page(make_page("plain", 11))
    assert select_strategy(table, READY).strategy == "vlm"
    assert select_strategy(plain, READY).strategy == "fast"
    assert select_strategy(table, READY.model_copy(update={"vlm_available": False})).strategy == "accurate"
