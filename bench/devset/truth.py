"""A generated page's ground truth: reading-order body text, running elements, tables and olmOCR-style checks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

CheckKind = Literal["present", "absent", "order", "table"]
Grid = list[list[str]]


class Check(BaseModel):
    """One unit test on a system's output.

    present: `text` is found (fuzzily) in the output text. absent: `text` is not found (a running header or
    footer); with `line_only`, only a whole output line equal to it counts (page numbers). order: `text` is found
    before `other`. table: in some table of the output, the cell `text` is left of (same row) / above (same
    column) the cell `other`.
    """

    kind: CheckKind
    text: str
    other: str | None = None
    relation: Literal["left_of", "above"] | None = None
    line_only: bool = False
    threshold: float = Field(0.95, description="rapidfuzz partial-ratio (0..1) that counts as found")
    note: str = Field("", description="what the check is about, e.g. 'column 1 end before column 2 start'")


class Truth(BaseModel):
    page_type: str
    seed: int
    text: str = Field(description="the body in reading order, headers/footers/page numbers left out; "
                                  "blocks separated by blank lines, table rows one per line, cells by spaces")
    floats: list[str] = Field(default_factory=list, description="blocks outside the text flow (a pull quote, a "
                                                                "photo caption): last in `text`, but CER takes them "
                                                                "wherever the output puts them")
    running: list[str] = Field(description="running headers, footers and page numbers, as printed")
    tables: list[Grid] = Field(default_factory=list, description="each table as rows of cell strings")
    checks: list[Check] = Field(default_factory=list)
