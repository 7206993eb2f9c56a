"""OCR job models: what a user asks for, what each page and the whole document come back as."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from maoocr.ocr.types import Block, OCRLine
from maoocr.pipeline.complexity_models import ComplexityAnalysis
from maoocr.protocol.jobs import JobError

RequestedStrategy = Literal["auto", "fast", "accurate", "vlm"]


class OCROptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: RequestedStrategy = "auto"
    first_page: int | None = Field(None, ge=1, description="1-based, inclusive")
    last_page: int | None = Field(None, ge=1, description="1-based, inclusive; beyond the end is clamped")
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"],
                                 description="Informational: the default PP-OCR models read Chinese and English")
    output: Literal["text", "json", "markdown"] = "json"
    keep_headers: bool = Field(False, description="keep running headers, footers and page numbers in `text` and "
                                                  "`markdown` (they are always in the page's `blocks`)")

    @model_validator(mode="after")
    def _range(self) -> "OCROptions":
        if self.first_page and self.last_page and self.first_page > self.last_page:
            raise ValueError(f"page range {self.first_page}-{self.last_page} is empty")
        return self

    @property
    def page_range(self) -> tuple[int, int] | None:
        if self.first_page is None and self.last_page is None:
            return None
        return self.first_page or 1, self.last_page or 10**9


class PageResult(BaseModel):
    index: int = Field(description="0-based position among the selected pages")
    page: int = Field(description="1-based page number in the original document")
    status: Literal["succeeded", "failed"]
    text: str = Field("", description="the page's blocks in reading order, running headers/footers left out "
                                       "unless keep_headers")
    markdown: str = ""
    lines: list[OCRLine] = Field(default_factory=list)
    blocks: list[Block] = Field(default_factory=list, description="typed regions in reading order")
    columns: int = Field(0, description="text columns the reading order found")
    layout_note: str | None = Field(None, description="why the layout or table model was not used, if it was not")
    complexity: ComplexityAnalysis | None = None
    strategy: str | None = None
    strategy_reason: str | None = None
    engine: str | None = None
    orientation: int = 0
    width: int = 0
    height: int = 0
    timings_ms: dict[str, float] = Field(default_factory=dict)
    error: JobError | None = None


class DocumentStats(BaseModel):
    pages: int
    pages_failed: int
    lines: int
    characters: int
    strategies: dict[str, int]
    total_ms: float


class DocumentResult(BaseModel):
    format: str
    pages: list[PageResult]
    text: str
    markdown: str
    stats: DocumentStats


class OCRTask(BaseModel):
    """The Celery payload of an OCR job (the document bytes wait in Redis under the job id)."""

    job_id: str
    options: OCROptions


class PageDecision(BaseModel):
    """How a page will be read, decided once; it travels with the page between the OCR worker (PP-OCR) and the
    model-steps worker (VLM OCR) so neither decides again."""

    analysis: ComplexityAnalysis
    strategy: str
    reason: str
    vlm_failed_ms: float | None = Field(None, description="time the VLM took before PP-OCR had to read the page")


class PageHandOff(BaseModel):
    """A page whose next step waits on a model: the decision when known (the VLM reads the page), else None (the
    analysis or selection itself asks a model); `note` says why the PDF text layer is not used, if so. A VLM page
    is sent by the OCR process, which renders and encodes it in parallel with its peers; the hand-off only waits."""

    decision: PageDecision | None = None
    note: str = ""
    vlm_job: str | None = Field(None, description="the VLM's transcription, already asked for as this job")
    vlm_sent_at: float = Field(0.0, description="when it was asked (epoch seconds): its time limit runs from there")
    page_size: tuple[int, int] = Field((0, 0), description="the upright page the VLM reads, in pixels")
    page: int = Field(0, description="its 1-based page number in the original document")
