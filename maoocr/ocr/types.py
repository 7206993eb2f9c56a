"""Result models shared by every OCR engine: one recognised line, and one page."""

from __future__ import annotations

from pydantic import BaseModel, Field

Point = tuple[float, float]


class OCRLine(BaseModel):
    """One recognised text line. `polygon` is in the pixel coordinates of the image given to the engine."""

    text: str
    polygon: list[Point] = Field(description="Corners clockwise from top-left of the upright line, input-image pixels.")
    confidence: float = Field(ge=0.0, le=1.0)
    block: int = Field(0, ge=0, description="Index of the block (column or paragraph) in reading order.")


class PageOCR(BaseModel):
    """The OCR result of one page: lines in reading order and the page text."""

    lines: list[OCRLine]
    text: str = Field(description="Lines joined by newlines; blocks (columns, paragraphs) separated by a blank line.")
    engine: str
    orientation: int = Field(0, description="Clockwise rotation, in degrees (0/90/180/270), applied to the "
                                            "input to read it upright.")
    width: int = Field(0, ge=0, description="Input image width in pixels.")
    height: int = Field(0, ge=0, description="Input image height in pixels.")
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @property
    def mean_confidence(self) -> float:
        return sum(line.confidence for line in self.lines) / len(self.lines) if self.lines else 0.0
