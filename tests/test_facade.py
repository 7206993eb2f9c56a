"""The library API without a model: `from maoocr import MaoOCR`; `MaoOCR().recognize(path)` runs
load_document → analysis → strategy → PP-OCR → assembly in this process (no Redis, no workers).

CER thresholds as in test_ocr.py: 0.02 for clean English pages.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from devtools import docgen
from maoocr.errors import UnsupportedMediaType
from maoocr.ocr.metrics import cer

CER_CLEAN_EN = 0.02


@pytest.fixture(scope="module", autouse=True)
def _fonts() -> None:
    docgen.require_fonts()


@pytest.fixture(scope="module")
def ocr():
    from maoocr import MaoOCR

    with MaoOCR() as instance:
        yield instance


def test_import_maoocr_stays_light() -> None:
    # The API process imports maoocr; the facade (OpenCV, ONNX, vLLM) must load only when used.
    code = ("import sys, maoocr, maoocr.vllm; from maoocr.pipeline import ocr_job; "
            "print(sorted(m for m in ('cv2', 'vllm', 'torch', 'rapidocr', 'maoocr.pipeline.facade') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_recognize_a_png_file_by_path(ocr, tmp_path) -> None:
    page = docgen.english_page()
    path = tmp_path / "letter.png"
    path.write_bytes(docgen.encode(page.image, "PNG"))
    result = ocr.recognize(str(path))
    assert cer(page.text, result.text) <= CER_CLEAN_EN, result.text
    assert result.format == "png" and result.stats.pages == 1
    first = result.pages[0]
    assert first.engine.startswith("rapidocr") and first.lines and first.lines[0].polygon
    # One page: the summary fields are that page's.
    assert result.complexity_analysis == first.complexity
    assert result.complexity_analysis.level == "simple" and result.complexity_analysis.analyzer == "heuristic"
    assert result.recommended_strategy == first.strategy == "fast"
    assert result.strategy_reason == first.strategy_reason and "simple" in first.strategy_reason


def test_recognize_pdf_pages_and_range(ocr) -> None:
    pages = docgen.numbered_pages(3)
    data = docgen.pdf_bytes(pages)
    result = ocr.recognize(data, pages=(2, 3))
    assert [p.page for p in result.pages] == [2, 3]
    for expected, got in zip(pages[1:], result.pages):
        assert cer(expected.text, got.text) <= CER_CLEAN_EN, got.text
    assert result.text.count("\f") == 1  # pages joined by a form feed
    hardest = max(result.pages, key=lambda p: p.complexity.score)
    assert result.complexity_analysis == hardest.complexity


def test_vlm_request_without_a_model_falls_back_with_reason(ocr) -> None:
    page = docgen.english_page()
    result = ocr.recognize(page.image, strategy="vlm")
    first = result.pages[0]
    assert first.strategy == "accurate" and first.engine.startswith("rapidocr")
    assert first.strategy_reason == ("requested 'vlm' but no VLM is available (enable_vllm is False); "
                                     "falling back to 'accurate'")
    assert cer(page.text, result.text) <= CER_CLEAN_EN


def test_vllm_analysis_without_a_model_says_why(ocr) -> None:
    page = docgen.english_page()
    result = asyncio.run(ocr.recognize_with_vllm_analysis(page.image))
    analysis = result.complexity_analysis
    assert analysis.analyzer == "heuristic" and analysis.rating is None
    assert "enable_vllm=False" in analysis.fallback_reason
    assert result.strategy_reason.startswith("LLM selector '(none)' failed (service_unavailable: ")
    assert "; rules: page is simple (score " in result.strategy_reason and result.strategy_reason.endswith("-> fast")
    assert cer(page.text, result.text) <= CER_CLEAN_EN


def test_bad_input_is_a_clear_error(ocr) -> None:
    with pytest.raises(UnsupportedMediaType):
        ocr.recognize(b"%not a document at all")
    with pytest.raises(FileNotFoundError):
        ocr.recognize("/nonexistent/scan.png")


def test_vllm_config_is_validated() -> None:
    from pydantic import ValidationError

    from maoocr import MaoOCR
    from maoocr.errors import ConfigError

    with pytest.raises(ValidationError, match="model_pth"):
        MaoOCR(enable_vllm=True, vllm_config={"model_pth": "/models/x"})
    with pytest.raises(ConfigError, match="needs a multimodal model"):
        MaoOCR(enable_vllm=True)


def test_model_references_in_the_ocr_section_are_checked_at_start_up(tmp_path) -> None:
    from devtools.processes import write_config
    from maoocr.config import load_settings
    from maoocr.errors import ConfigError

    config = write_config(tmp_path, "redis://127.0.0.1:1/0", "/models/tiny",
                          extra_models={"eyes": {"model_path": None, "model_type": "multimodal"}})
    cases = {
        "MAOOCR_OCR__VLM_MODEL": ("tiny", "ocr.vlm_model: model 'tiny' is model_type 'text'; it must be "
                                          "'multimodal' to see page images"),
        "MAOOCR_OCR__ANALYZER": ("vlm", "ocr.analyzer_model: analyzer: vlm needs analyzer_model or vlm_model"),
        "MAOOCR_OCR__SELECTOR_MODEL": ("nope", None),  # only checked when selector: llm
    }
    for key, (value, message) in cases.items():
        if message is None:
            load_settings(config, env={key: value})
            continue
        with pytest.raises(ConfigError) as caught:
            load_settings(config, env={key: value})
        assert caught.value.message == f"{config}: {message}"
    settings = load_settings(config, env={"MAOOCR_OCR__VLM_MODEL": "eyes", "MAOOCR_OCR__ANALYZER": "vlm",
                                          "MAOOCR_OCR__SELECTOR": "llm"})
    assert (settings.ocr.vlm_model, settings.ocr.analyzer, settings.ocr.selector) == ("eyes", "vlm", "llm")


def test_seed_faces_adapter_and_memory_optimizer(tmp_path) -> None:
    from pydantic import ValidationError

    from devtools.processes import write_config
    from maoocr.config import ModelConfig, load_settings
    from maoocr.errors import InvalidRequest
    from maoocr.vllm import MemoryOptimizer, MultiInterfaceAPIAdapter

    adapter = MultiInterfaceAPIAdapter(load_settings(write_config(tmp_path, "redis://127.0.0.1:1/0", "/m"), env={}))
    chat = adapter.chat({"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 7,
                         "stop": "END", "user": "ignored like OpenAI does"})
    assert (chat.model, chat.max_tokens, chat.stop, chat.messages[0].text()) == ("tiny", 7, ["END"], "Hi")
    assert adapter.completion({"prompt": ["one"], "model": "tiny"}).prompt == "one"
    assert adapter.generate({"prompt": "x"}).max_tokens == 256  # the HTTP API's default
    with pytest.raises(ValidationError, match="messages"):
        adapter.chat({"model": "tiny"})
    with pytest.raises(InvalidRequest, match="leaves no room for the prompt"):
        adapter.generate({"prompt": "x", "max_tokens": 5000})

    optimizer = MemoryOptimizer()
    plan = optimizer.plan(ModelConfig(max_num_seqs=4))  # max_num_seqs from the config always wins
    assert (plan.device, plan.max_num_seqs) == ("cuda" if optimizer.gpus() else "cpu", 4)
    assert optimizer.plan(ModelConfig(), force_cpu=True, cpu_max_num_seqs=3).max_num_seqs == 3
