"""Grids of table cells from word positions alone (text-layer tables, and the fallback when the structure model's
grid is not believable), and a table's markdown and HTML."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np

from maoocr.ocr.types import Box, Table, TableCell

Word = tuple[str, Box]


def table_from_words(words: Sequence[Word]) -> Table:
    """A grid from the alignment of words alone: rows from vertical overlap, columns from the vertical gaps that
    (nearly) every row leaves free. A word crossing a column gap becomes a spanning cell unless it splits at spaces.
    Exact for born-digital text layers; wrapped multi-line cells come out as extra rows."""
    return alignment_table(clean_words(words), "alignment")


def to_markdown(table: Table) -> str:
    """A pipe table whose first row is the header; HTML instead when any cell spans rows or columns."""
    if any(c.row_span > 1 or c.col_span > 1 for c in table.cells):
        return to_html(table)
    if not table.rows or not table.cols:
        return ""
    grid = [[""] * table.cols for _ in range(table.rows)]
    for cell in table.cells:
        grid[cell.row][cell.col] = " ".join(cell.text.split()).replace("|", "\\|").replace("<", "&lt;")
    lines = ["| " + " | ".join(row) + " |" for row in grid]
    lines.insert(1, "|" + " --- |" * table.cols)
    return "\n".join(lines)


def to_html(table: Table) -> str:
    """`<table><tr><td colspan="2">...`; text escaped."""
    rows: list[list[TableCell]] = [[] for _ in range(table.rows)]
    for cell in sorted(table.cells, key=lambda c: (c.row, c.col)):
        rows[cell.row].append(cell)
    out = ["<table>"]
    for row in rows:
        out.append("<tr>")
        for cell in row:
            attrs = (f' colspan="{cell.col_span}"' if cell.col_span > 1 else "") + \
                    (f' rowspan="{cell.row_span}"' if cell.row_span > 1 else "")
            out.append(f"<td{attrs}>{html.escape(cell.text, quote=False)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def clean_words(words: Sequence[Word]) -> list[Word]:
    out = []
    for text, box in words:
        x0, y0, x1, y1 = (float(v) for v in box)
        if text.strip() and x1 > x0 and y1 > y0:
            out.append((" ".join(text.split()), (x0, y0, x1, y1)))
    return out


def make_table(cells: list[TableCell], source: str) -> Table:
    """Fill the slots no cell covers with empty cells and render markdown and HTML."""
    rows = max((c.row + c.row_span for c in cells), default=0)
    cols = max((c.col + c.col_span for c in cells), default=0)
    covered = {(r, c) for cell in cells for r in range(cell.row, cell.row + cell.row_span)
               for c in range(cell.col, cell.col + cell.col_span)}
    cells = cells + [TableCell(row=r, col=c) for r in range(rows) for c in range(cols) if (r, c) not in covered]
    cells.sort(key=lambda c: (c.row, c.col))
    table = Table(rows=rows, cols=cols, cells=cells, markdown="", html="", source=source)
    return table.model_copy(update={"markdown": to_markdown(table), "html": to_html(table)})


def alignment_table(words: list[Word], source: str) -> Table:
    if not words:
        return make_table([], source)
    rows = text_rows(words)
    edges = _column_edges(words, rows)
    cells: list[TableCell] = []
    for r, row in enumerate(rows):
        pieces = [p for i in sorted(row, key=lambda i: words[i][1][0])
                  for p in split_at_edges(*words[i], edges, keep_spans=True)]
        slack = 0.3 * _height(pieces)
        groups: list[list] = []  # [first col, last col, pieces, box]
        for text, (x0, y0, x1, y1) in sorted(pieces, key=lambda p: p[1][0]):
            first = int(np.searchsorted(edges, x0 + slack))
            last = max(first, int(np.searchsorted(edges, x1 - slack)))
            if groups and first <= groups[-1][1]:
                g = groups[-1]
                g[1], g[2] = max(g[1], last), g[2] + [text]
                g[3] = (min(g[3][0], x0), min(g[3][1], y0), max(g[3][2], x1), max(g[3][3], y1))
            else:
                groups.append([first, last, [text], (x0, y0, x1, y1)])
        cells += [TableCell(row=r, col=g[0], col_span=g[1] - g[0] + 1, text=" ".join(g[2]), box=g[3])
                  for g in groups]
    return make_table(cells, source)


def split_at_edges(text: str, box: Box, edges: Sequence[float], *, keep_spans: bool) -> list[Word]:
    """`text` cut at its spaces into pieces that each fall between two of `edges`, x positions estimated from
    typical glyph widths. The whole word when it crosses no edge or has no space; with `keep_spans`, also when a
    piece would straddle an edge (the text of a spanning cell)."""
    x0, y0, x1, y1 = box
    slack = 0.3 * (y1 - y0)
    inner = [e for e in edges if x0 + slack < e < x1 - slack]
    if not inner or " " not in text:
        return [(text, box)]
    offsets = np.concatenate([[0.0], np.cumsum([_glyph_width(ch) for ch in text])])
    scale = (x1 - x0) / offsets[-1]
    pieces: list[tuple[int, str, float, float]] = []
    for match in re.finditer(r"\S+", text):
        a, b = x0 + offsets[match.start()] * scale, x0 + offsets[match.end()] * scale
        if keep_spans and any(a < e - slack and b > e + slack for e in inner):
            return [(text, box)]
        column = int(np.searchsorted(inner, (a + b) / 2))
        if pieces and pieces[-1][0] == column:
            pieces[-1] = (column, f"{pieces[-1][1]} {match.group()}", pieces[-1][2], b)
        else:
            pieces.append((column, match.group(), a, b))
    return [(t, (a, y0, b, y1)) for _, t, a, b in pieces]


def _glyph_width(ch: str) -> float:
    """Rough advance of a glyph in a proportional Latin font, in average-character units; CJK is square."""
    if ch in " .,:;'|!ijlI()[]-":
        return 0.5
    if ch in "mwMW%@":
        return 1.4
    return 1.8 if ord(ch) > 0x2E80 else 1.0


def text_rows(words: Sequence[Word]) -> list[list[int]]:
    """Indices of words grouped into text rows, top to bottom (a word joins a row its centre lies within)."""
    order = sorted(range(len(words)), key=lambda i: (words[i][1][1] + words[i][1][3]) / 2)
    rows: list[list[int]] = []
    bands: list[list[float]] = []
    for i in order:
        _, (_, y0, _, y1) = words[i]
        centre = (y0 + y1) / 2
        if bands and bands[-1][0] <= centre <= bands[-1][1]:
            rows[-1].append(i)
            band = bands[-1]
            band[0], band[1] = max(band[0], y0 + 0.25 * (y1 - y0)), min(band[1], y1 - 0.25 * (y1 - y0))
            if band[0] > band[1]:
                band[0] = band[1] = (band[0] + band[1]) / 2
        else:
            rows.append([i])
            bands.append([y0 + 0.25 * (y1 - y0), y1 - 0.25 * (y1 - y0)])
    return rows


def _height(words: Sequence[Word]) -> float:
    return float(np.median([b[3] - b[1] for _, b in words])) if words else 0.0


def _column_edges(words: Sequence[Word], rows: list[list[int]]) -> list[float]:
    """x positions of the column gaps: runs at least ~one character wide that all rows but a few leave free."""
    left = min(b[0] for _, b in words)
    right = max(b[2] for _, b in words)
    width = int(np.ceil(right - left)) + 1
    coverage = np.zeros(width, dtype=np.int32)
    for row in rows:
        line = np.zeros(width, dtype=bool)
        for i in row:
            _, (x0, _, x1, _) = words[i]
            line[int(x0 - left): int(np.ceil(x1 - left)) + 1] = True
        coverage += line
    # A spanning header or a long title row may cross a gap the other rows keep open.
    allowed = 0 if len(rows) < 3 else max(1, len(rows) // 5)
    free = coverage <= allowed
    # Wider than a word space (~0.3 of a line's height), narrower than the padding of tight cells.
    min_gap = max(3.0, 0.35 * _height(words))
    edges: list[float] = []
    for start, end in _runs(free):
        if end - start >= min_gap:
            # Inside the gap, the stretch the fewest rows cross: the gap proper, not a ragged row's overhang.
            lowest = coverage[start:end] == coverage[start:end].min()
            a, b = max(_runs(lowest), key=lambda run: run[1] - run[0])
            edges.append(left + start + (a + b) / 2)
    return edges


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in `mask`."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[0::2].tolist(), change[1::2].tolist(), strict=True))
