"""Result models shared by every OCR engine: one recognised line, and one page."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in input-image pixels

# The layout classes of a page region. header/footer/page_number are running elements: kept in the JSON, left out
# of `text` and `markdown` unless asked for.
BlockType = Literal["text", "title", "list", "figure", "caption", "table", "table_caption", "header", "footer",
                    "page_number", "reference", "equation"]
RUNNING_TYPES: frozenset[str] = frozenset({"header", "footer", "page_number"})


class OCRLine(BaseModel):
    """One recognised text line. `polygon` is in the pixel coordinates of the image given to the engine."""

    text: str
    polygon: list[Point] = Field(description="Corners clockwise from top-left of the upright line, input-image pixels.")
    confidence: float = Field(ge=0.0, le=1.0)
    block: int = Field(0, ge=0, description="Index of the block (column or paragraph) in reading order.")


class TableCell(BaseModel):
    """One cell of a recognised table: its grid position, span, box and the OCR text inside it."""

    row: int = Field(ge=0)
    col: int = Field(ge=0)
    row_span: int = Field(1, ge=1)
    col_span: int = Field(1, ge=1)
    box: Box | None = Field(None, description="input-image pixels; None when the structure model gave no box")
    text: str = ""


class Table(BaseModel):
    rows: int = Field(ge=0)
    cols: int = Field(ge=0)
    cells: list[TableCell]
    markdown: str = Field(description="a pipe table; HTML when a cell spans several rows or columns")
    html: str
    source: str = Field("slanet", description="'slanet' (the structure model) or 'alignment' (word positions); "
                                              "'alignment: <why>' when the model's grid was rejected")


class Block(BaseModel):
    """A typed region of the page (a paragraph, title, table, header...) in reading order."""

    index: int = Field(ge=0, description="position in reading order")
    type: BlockType
    box: Box
    text: str = Field("", description="the block's lines joined (hyphenation undone for text blocks)")
    table: Table | None = None
    source: str = Field("layout", description="'layout' (the layout model), 'lines' (grouped from text lines), "
                                               "or 'text_layer'")


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
    blocks: list[Block] = Field(default_factory=list, description="typed regions in reading order")
    columns: int = Field(0, ge=0, description="text columns found by the reading order")
    layout_note: str | None = Field(None, description="why the layout model's blocks were not used, if they were not")

    @property
    def mean_confidence(self) -> float:
        return sum(line.confidence for line in self.lines) / len(self.lines) if self.lines else 0.0
