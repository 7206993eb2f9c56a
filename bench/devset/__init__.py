"""The development set for document accuracy: generated pages (magazine, newspaper, paper, invoice, letter) as a
born-digital PDF, a 300 dpi bilevel scan and a 200 dpi grayscale scan, each with ground truth and unit checks.
Built on the fly from a seed; nothing is stored."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from bench.devset import scan
from bench.devset.checks import derive
from bench.devset.pages import BUILDERS
from bench.devset.truth import Check, Truth

PAGE_TYPES = tuple(BUILDERS)
Variant = Literal["pdf", "scan300", "scan200"]
VARIANTS: tuple[Variant, ...] = ("pdf", "scan300", "scan200")
SUFFIX = {"pdf": ".pdf", "scan300": ".tiff", "scan200": ".jpg"}

__all__ = ["PAGE_TYPES", "VARIANTS", "Check", "DevPage", "Truth", "build"]


@dataclass
class DevPage:
    page_type: str
    seed: int
    pdf: bytes
    truth: Truth
    photos: list[tuple[float, float, float, float]]
    columns: list[str]  # each column's (frame's) text as typeset, in reading order

    @property
    def name(self) -> str:
        return f"{self.page_type}-{self.seed}"

    def document(self, variant: Variant) -> bytes:
        """The page as that variant's file bytes (PDF, Group 4 TIFF or JPEG)."""
        if variant == "pdf":
            return self.pdf
        if variant == "scan300":
            return self._scan300
        return self._scan200

    @cached_property
    def _scan300(self) -> bytes:
        return scan.bilevel_300(self.pdf, self.seed, self.photos)

    @cached_property
    def _scan200(self) -> bytes:
        return scan.gray_200(self.pdf, self.seed)


def build(page_type: str, seed: int) -> DevPage:
    """Typeset one page of `page_type` from `seed`, with its truth and checks."""
    sheet = BUILDERS[page_type](seed)
    text = "\n\n".join(block.text for block in sheet.blocks if block.text)
    checks = derive(sheet, text, random.Random(seed * 7919 + 1))
    truth = Truth(page_type=page_type, seed=seed, text=text, running=[t for _, t in sheet.running],
                  floats=[block.text for block in sheet.blocks if block.floating and block.text],
                  tables=sheet.tables, checks=checks)
    columns = [" ".join(w for w in frame.words if w) for frame in sheet.frames]
    return DevPage(page_type, seed, sheet.pdf(), truth, sheet.photos, columns)
