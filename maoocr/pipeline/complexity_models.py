"""The result of page complexity analysis, apart from the analysis itself so wire models need no OpenCV."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["simple", "medium", "complex"]


class PageFeatures(BaseModel):
    width_px: int
    height_px: int
    dpi: float
    dpi_source: Literal["given", "paper_size", "line_pitch", "assumed_a4"]
    is_blank: bool
    inverted: bool = Field(description="light text on a dark background (levels below are after inversion)")
    ink_ratio: float = Field(description="fraction of page pixels that are ink")
    text_area_ratio: float = Field(description="fraction of ~0.05 in cells that hold >= 5 % ink")
    text_lines_per_column: int
    line_height_px: float = Field(description="median text-line height, ascenders to descenders, full-res px")
    skew_deg: float = Field(description="counter-clockwise tilt of the text lines; image.rotate(-skew) deskews")
    orientation: Literal[0, 90, 180, 270] = Field(
        description="counter-clockwise rotation of the upright page; image.rotate(-orientation, expand=True) undoes it")
    orientation_confidence: float = Field(description="0..1; <= 0.5: 0 vs 180 (90 vs 270) undecided")
    columns: int = Field(description="text columns separated by whitespace gutters; 0 on a blank page")
    has_table: bool
    horizontal_rules: int
    vertical_rules: int
    table_area_ratio: float
    contrast: float = Field(description="(paper level - ink level) / 255")
    background_level: float
    ink_level: float
    noise_sigma: float = Field(description="robust noise sigma in gray levels at full resolution")
    snr: float = Field(description="contrast in gray levels / noise sigma, capped at 100")
    mean_saturation: float
    color_ratio: float = Field(description="fraction of pixels with HSV saturation > 0.25 that are not dark")
    is_color: bool


class PageRating(BaseModel):
    """A vision model's rating of a page (`maoocr.pipeline.vlm_analysis`); its JSON schema constrains the answer."""

    model_config = ConfigDict(extra="forbid")

    score: float = Field(ge=0.0, le=1.0, description="0: clean single-column print; 1: very hard to OCR")
    columns: int = Field(ge=0, le=8, description="text columns; 0 on a blank page")
    has_table: bool
    handwriting: bool
    degraded: bool = Field(description="noisy, blurred, low-contrast, skewed or rotated")
    reason: str = Field(min_length=1, max_length=200, description="one sentence on what makes the page hard or easy")


class ComplexityAnalysis(BaseModel):
    score: float = Field(ge=0.0, le=1.0)
    level: Level
    features: PageFeatures
    contributions: dict[str, float] = Field(default_factory=dict, description="per-cue parts of the score")
    analysis_ms: float
    analyzer: str = Field("heuristic", description="'heuristic', or 'vlm:<model>' when score and level are a "
                                                 "vision model's rating (features stay the heuristic ones)")
    rating: PageRating | None = Field(None, description="the vision model's validated answer, when it gave one")
    fallback_reason: str | None = Field(None, description="why a requested VLM analysis fell back to the heuristic")
