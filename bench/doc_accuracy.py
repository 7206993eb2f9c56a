"""Document accuracy: the generated development set (bench.devset) read by MaoOCR (in-process), Tesseract 5 and
the PDF's own text layer, scored side by side: CER in reading order, running headers/footers left out, table
cells, olmOCR-style unit checks, pages/s. One JSON line per figure.

MaoOCR is scored on its `text` (tables also from its `markdown` and from any block's `table`); Tesseract on its
plain-text output (the PDF variant rendered at 300 dpi for it); the text layer only exists for the PDF variant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.devset import PAGE_TYPES, SUFFIX, VARIANTS, DevPage, build, scan
from bench.devset.scoring import PageScore, SystemOutput, score
from bench.devset.truth import Grid

SYSTEMS = ("maoocr", "tesseract", "pdf_text")
QUICK = ("paper", "pdf")


@dataclass
class DocAccuracyOptions:
    page_types: tuple[str, ...] = PAGE_TYPES
    variants: tuple[str, ...] = VARIANTS
    systems: tuple[str, ...] = SYSTEMS
    seeds: int = 2  # pages per type
    first_seed: int = 1
    quick: bool = False  # one page type, one variant: QUICK
    report: str | None = None  # a JSON-lines file of per-page scores and failed checks

    def __post_init__(self) -> None:
        if self.quick:
            self.page_types, self.variants, self.seeds = (QUICK[0],), (QUICK[1],), 1
        unknown = set(self.page_types) - set(PAGE_TYPES) | set(self.variants) - set(VARIANTS) | \
            set(self.systems) - set(SYSTEMS)
        if unknown:
            raise ValueError(f"doc_accuracy: unknown page type, variant or system: {', '.join(sorted(unknown))}")


Reader = Callable[[DevPage, str], SystemOutput]


@dataclass
class System:
    name: str
    read: Reader
    variants: tuple[str, ...]
    version: str = ""
    close: Callable[[], None] = field(default=lambda: None)


def maoocr_system() -> System:
    from PIL import Image, ImageDraw

    from maoocr.pipeline.facade import MaoOCR

    engine = MaoOCR()
    warmup = Image.new("L", (400, 80), 255)
    ImageDraw.Draw(warmup).text((10, 30), "warm up the engines", fill=0)
    engine.recognize(warmup)  # model loading is not what pages/s measures

    def read(page: DevPage, variant: str) -> SystemOutput:
        result = engine.recognize(page.document(variant))
        return SystemOutput(text=result.text, markdown=result.markdown, tables=block_tables(result))

    return System("maoocr", read, VARIANTS, close=engine.close)


def block_tables(result) -> list[Grid]:
    """Tables structured by the pipeline (a block's `table` cells), read defensively: older results have none."""
    grids = []
    for page in getattr(result, "pages", []) or []:
        for block in getattr(page, "blocks", None) or []:
            table = getattr(block, "table", None)
            cells = getattr(table, "cells", None) or []
            if not cells:
                continue
            rows = max(c.row + getattr(c, "row_span", 1) for c in cells)
            cols = max(c.col + getattr(c, "col_span", 1) for c in cells)
            grid = [["" for _ in range(cols)] for _ in range(rows)]
            for c in cells:
                grid[c.row][c.col] = c.text or ""
            grids.append(grid)
    return grids


def tesseract_system() -> System | str:
    """Tesseract via its command line, or why it can't run."""
    exe = shutil.which("tesseract")
    if exe is None:
        return "tesseract not found on PATH (scripts/install_bench_tools.sh installs it)"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    work = Path(tempfile.mkdtemp(prefix="maoocr-tesseract-"))

    def read(page: DevPage, variant: str) -> SystemOutput:
        data = scan.png(page.pdf, 300) if variant == "pdf" else page.document(variant)
        path = work / f"{page.name}{'.png' if variant == 'pdf' else SUFFIX[variant]}"
        path.write_bytes(data)
        # One OpenMP thread: on a busy machine Tesseract's threads spin against each other (5x slower here).
        done = subprocess.run([exe, str(path), "-", "-l", "eng"], capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_THREAD_LIMIT": "1"})
        return SystemOutput(text=done.stdout)

    return System("tesseract", read, VARIANTS, version, close=lambda: shutil.rmtree(work, ignore_errors=True))


def pdf_text_system() -> System:
    import pypdfium2 as pdfium

    def read(page: DevPage, variant: str) -> SystemOutput:
        doc = pdfium.PdfDocument(page.pdf)
        try:
            return SystemOutput(text=doc[0].get_textpage().get_text_range())
        finally:
            doc.close()

    return System("pdf_text", read, ("pdf",), f"pypdfium2 {pdfium.PYPDFIUM_INFO}, pdfium {pdfium.PDFIUM_INFO}")


_FACTORIES: dict[str, Callable[[], System | str]] = {
    "maoocr": maoocr_system, "tesseract": tesseract_system, "pdf_text": pdf_text_system}


@dataclass
class Tally:
    pages: int = 0
    seconds: float = 0.0
    edits: float = 0.0
    chars: int = 0
    running: list[int] = field(default_factory=lambda: [0, 0])
    cells: list[int] = field(default_factory=lambda: [0, 0])
    checks: dict[str, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, s: PageScore, seconds: float, error: str | None = None) -> None:
        self.pages += 1
        if error:
            self.errors.append(error)
        self.seconds += seconds
        self.edits += s.cer * s.chars
        self.chars += s.chars
        self.running[0] += s.running_excluded
        self.running[1] += s.running
        self.cells[0] += s.table_cells_found
        self.cells[1] += s.table_cells
        for kind, (passed, total) in s.checks.items():
            tally = self.checks.setdefault(kind, [0, 0])
            tally[0] += passed
            tally[1] += total

    def merge(self, other: "Tally") -> None:
        self.pages += other.pages
        self.errors += other.errors
        self.seconds += other.seconds
        self.edits += other.edits
        self.chars += other.chars
        for mine, theirs in ((self.running, other.running), (self.cells, other.cells)):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
        for kind, (passed, total) in other.checks.items():
            tally = self.checks.setdefault(kind, [0, 0])
            tally[0] += passed
            tally[1] += total

    def figures(self) -> dict:
        passed = sum(p for p, _ in self.checks.values())
        total = sum(t for _, t in self.checks.values())
        return {
            "pages": self.pages,
            "cer": _ratio(self.edits, self.chars, 4),
            "running_excluded": _ratio(*self.running),
            "table_cells": _ratio(*self.cells),
            "checks_pass": _ratio(passed, total),
            "checks": {kind: f"{p}/{t}" for kind, (p, t) in sorted(self.checks.items())},
            "pages_s": round(self.pages / self.seconds, 3) if self.seconds else None,
            **({"errors": len(self.errors), "first_error": self.errors[0][:300]} if self.errors else {}),
        }


def _ratio(part: float, whole: float, digits: int = 3) -> float | None:
    return round(part / whole, digits) if whole else None


def run(options: DocAccuracyOptions) -> list[dict]:
    figures: list[dict] = []
    systems: list[System] = []
    for name in options.systems:
        made = _FACTORIES[name]()
        if isinstance(made, str):
            figures.append({"metric": "doc_accuracy_system", "system": name, "skipped": made})
        else:
            systems.append(made)
            figures.append({"metric": "doc_accuracy_system", "system": name, "version": made.version or None})
    report = open(options.report, "w") if options.report else None
    tallies: dict[tuple[str, str, str], Tally] = {}
    try:
        pages = [build(t, seed) for t in options.page_types
                 for seed in range(options.first_seed, options.first_seed + options.seeds)]
        for page in pages:
            for variant in options.variants:
                for system in systems:
                    if variant not in system.variants:
                        continue
                    start = time.perf_counter()
                    error = None
                    try:
                        output = system.read(page, variant)
                    except Exception as exc:  # a page a system can't read scores as an empty answer
                        output, error = SystemOutput(text=""), f"{type(exc).__name__}: {exc}"
                    seconds = time.perf_counter() - start
                    result = score(page.truth, output)
                    tally = tallies.setdefault((system.name, page.page_type, variant), Tally())
                    tally.add(result, seconds, error)
                    if report:
                        report.write(json.dumps({"system": system.name, "page": page.name, "variant": variant,
                                                 "cer": round(result.cer, 4), "checks": result.checks,
                                                 "failures": result.failures, "seconds": round(seconds, 3),
                                                 "error": error}) + "\n")
                        report.flush()
    finally:
        for system in systems:
            system.close()
        if report:
            report.close()
    for (system, page_type, variant), tally in tallies.items():
        figures.append({"metric": "doc_accuracy", "system": system, "page_type": page_type, "variant": variant,
                        **tally.figures()})
    figures += _summaries(tallies, [s.name for s in systems])
    return figures


def _summaries(tallies: dict[tuple[str, str, str], Tally], systems: list[str]) -> list[dict]:
    out = []
    for system in systems:
        overall, by_variant = Tally(), {}
        for (name, _, variant), tally in tallies.items():
            if name == system:
                overall.merge(tally)
                by_variant.setdefault(variant, Tally()).merge(tally)
        if not overall.pages:
            continue
        figures = overall.figures()
        out.append({"metric": "doc_accuracy_checks_pass", "system": system, "value": figures["checks_pass"],
                    "by_kind": figures["checks"],
                    "by_variant": {v: t.figures()["checks_pass"] for v, t in sorted(by_variant.items())},
                    "cer": figures["cer"], "running_excluded": figures["running_excluded"],
                    "table_cells": figures["table_cells"], "pages": overall.pages})
        magazine = {v: tallies[(system, "magazine", v)].figures()["cer"] for v in ("scan300", "scan200")
                    if (system, "magazine", v) in tallies}
        if magazine:
            out.append({"metric": "doc_accuracy_magazine_scan_cer", "system": system,
                        "value": magazine.get("scan300"), **{f"cer_{v}": c for v, c in magazine.items()}})
    return out
