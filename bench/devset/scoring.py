"""Scores a system's output against a page's truth: CER in reading order, running-element exclusion, table cells
and the olmOCR-style checks (present, absent, order, table)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from bench.devset.truth import Check, Grid, Truth
from maoocr.ocr.metrics import normalize_text

_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "‐": "-", "·": " "})
_LINE_HYPHEN = re.compile(r"(\w)-[ \t]*\n\s*(\w)")
_SPACES = re.compile(r"\s+")
_MD_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")


@dataclass
class SystemOutput:
    """What a system gave back for one page: its text, its markdown (if any) and any tables it structured."""

    text: str
    markdown: str = ""
    tables: list[Grid] = field(default_factory=list)

    def all_tables(self) -> list[Grid]:
        found = list(self.tables)
        for source in {self.text, self.markdown}:
            found += markdown_tables(source) + html_tables(source)
        return found


@dataclass
class PageScore:
    cer: float
    chars: int
    running: int
    running_excluded: int
    table_cells: int
    table_cells_found: int
    checks: dict[str, list[int]]  # kind -> [passed, total]
    failures: list[str]


def truth_output(truth: Truth) -> SystemOutput:
    """The truth as a system would ideally answer: its text, and its tables as markdown and as grids."""
    markdown = "\n\n".join([truth.text] + [_pipe_table(grid) for grid in truth.tables])
    return SystemOutput(text=truth.text, markdown=markdown, tables=[[list(r) for r in g] for g in truth.tables])


def _pipe_table(grid: Grid) -> str:
    rows = ["| " + " | ".join(row) + " |" for row in grid]
    return "\n".join(rows[:1] + ["|" + "---|" * len(grid[0])] + rows[1:])


def normalize(text: str) -> str:
    """For matching checks: NFKC, one quote and dash style, hyphenation at line ends undone, case and spaces folded."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = _LINE_HYPHEN.sub(r"\1\2", text)
    return _SPACES.sub(" ", text).strip().casefold()


def find(needle: str, haystack: str, threshold: float) -> int | None:
    """Start of the best fuzzy match of normalized `needle` in normalized `haystack`, or None below threshold."""
    if not needle or not haystack:
        return None
    if len(haystack) <= len(needle):
        return 0 if fuzz.ratio(needle, haystack) >= threshold * 100 else None
    found = fuzz.partial_ratio_alignment(needle, haystack, score_cutoff=threshold * 100)
    return None if found is None else found.dest_start


def cer(truth: str, output: str, floats: list[str] | tuple[str, ...] = ()) -> float:
    """Edit distance over the truth's length, whitespace folded. Each float (a text of `truth` whose place in
    the reading order is free) is cut out of both sides first, from wherever the output has it, and scored
    on its own: so its position costs nothing and its errors still count."""
    ref, hyp = normalize_text(truth), normalize_text(output)
    if not ref:
        return 0.0 if not hyp else 1.0
    length, edits = len(ref), 0
    for text in map(normalize_text, floats):
        ref = ref.replace(text, " ", 1)
        found = fuzz.partial_ratio_alignment(text, hyp, score_cutoff=80) if len(hyp) > len(text) else None
        if found is None:
            edits += len(text)
            continue
        edits += Levenshtein.distance(text, hyp[found.dest_start:found.dest_end])
        hyp = f"{hyp[:found.dest_start]} {hyp[found.dest_end:]}"
    return (edits + Levenshtein.distance(normalize_text(ref), normalize_text(hyp))) / length


def run_check(check: Check, output: SystemOutput, text: str | None = None, tables: list[Grid] | None = None) -> bool:
    text = normalize(output.text) if text is None else text
    if check.kind == "present":
        return find(normalize(check.text), text, check.threshold) is not None
    if check.kind == "absent":
        if check.line_only:
            return normalize(check.text) not in {normalize(line) for line in output.text.splitlines()}
        return find(normalize(check.text), text, check.threshold) is None
    if check.kind == "order":
        a = find(normalize(check.text), text, check.threshold)
        b = find(normalize(check.other or ""), text, check.threshold)
        return a is not None and b is not None and a < b
    grids = output.all_tables() if tables is None else tables
    return any(_neighbours(grid, check.text, check.other or "", check.relation or "left_of") for grid in grids)


def score(truth: Truth, output: SystemOutput) -> PageScore:
    text = normalize(output.text)
    tables = output.all_tables()
    checks: dict[str, list[int]] = {}
    failures = []
    for check in truth.checks:
        passed = run_check(check, output, text, tables)
        tally = checks.setdefault(check.kind, [0, 0])
        tally[0] += passed
        tally[1] += 1
        if not passed:
            failures.append(f"{check.kind}: {check.text[:60]!r}" + (f" / {check.other[:60]!r}" if check.other else ""))
    running = [c for c in truth.checks if c.kind == "absent"]
    excluded = sum(run_check(c, output, text) for c in running)
    cells = sum(len(row) for grid in truth.tables for row in grid)
    found = sum(_cells_found(grid, tables) for grid in truth.tables)
    return PageScore(cer=cer(truth.text, output.text, truth.floats), chars=len(normalize_text(truth.text)), running=len(running),
                     running_excluded=excluded, table_cells=cells, table_cells_found=found, checks=checks,
                     failures=failures)


def _cell(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).translate(_QUOTES)).strip().strip("*").casefold()


def _same(a: str, b: str) -> bool:
    a, b = _cell(a), _cell(b)
    return a == b or (len(a) >= 8 and fuzz.ratio(a, b) >= 90)


def _positions(grid: Grid, value: str) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(grid) for c, cell in enumerate(row) if _same(cell, value)]


def _neighbours(grid: Grid, a: str, b: str, relation: str) -> bool:
    """Is cell b the right-hand (left_of) or lower (above) neighbour of cell a in this grid?"""
    dr, dc = (0, 1) if relation == "left_of" else (1, 0)
    targets = set(_positions(grid, b))
    return any((r + dr, c + dc) in targets for r, c in _positions(grid, a))


def _cells_found(truth: Grid, tables: list[Grid]) -> int:
    """Truth cells found at their row/column in the best-matching output table (shifted by at most one row
    and one column, for an extra header row or index column)."""
    best = 0
    for grid in tables:
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                hits = 0
                for r, row in enumerate(truth):
                    for c, value in enumerate(row):
                        rr, cc = r + dr, c + dc
                        if 0 <= rr < len(grid) and 0 <= cc < len(grid[rr]) and _same(grid[rr][cc], value):
                            hits += 1
                best = max(best, hits)
    return best


def markdown_tables(text: str) -> list[Grid]:
    """Pipe tables: runs of lines starting with '|', the separator row dropped."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            if not _MD_RULE.match(stripped):
                current.append([cell.strip() for cell in stripped.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


class _HTMLTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[Grid] = []
        self._stack: list[list[list[tuple[str, int, int]]]] = []
        self._cell: list[str] | None = None
        self._span = (1, 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._stack.append([])
        elif tag == "tr" and self._stack:
            self._stack[-1].append([])
        elif tag in ("td", "th") and self._stack:
            if not self._stack[-1]:
                self._stack[-1].append([])
            named = dict(attrs)
            self._cell, self._span = [], (_int(named.get("rowspan")), _int(named.get("colspan")))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._stack:
            self._stack[-1][-1].append(("".join(self._cell).strip(), *self._span))
            self._cell = None
        elif tag == "table" and self._stack:
            self.tables.append(_expand(self._stack.pop()))


def _int(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _expand(rows: list[list[tuple[str, int, int]]]) -> Grid:
    """HTML rows with spans -> a rectangular grid (a spanning cell's text in its first slot, '' in the rest)."""
    grid: dict[tuple[int, int], str] = {}
    for r, row in enumerate(rows):
        c = 0
        for text, rowspan, colspan in row:
            while (r, c) in grid:
                c += 1
            for i in range(rowspan):
                for j in range(colspan):
                    grid[(r + i, c + j)] = text if i == j == 0 else ""
            c += colspan
    if not grid:
        return []
    height, width = max(r for r, _ in grid) + 1, max(c for _, c in grid) + 1
    return [[grid.get((r, c), "") for c in range(width)] for r in range(height)]


def html_tables(text: str) -> list[Grid]:
    if "<table" not in text.lower():
        return []
    parser = _HTMLTables()
    parser.feed(text)
    return parser.tables
