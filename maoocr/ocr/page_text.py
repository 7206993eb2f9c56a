"""A page's blocks as plain text and as markdown: paragraphs joined across line breaks (hyphenation undone),
headings from titles, lists, tables; running headers, footers and page numbers left out unless asked for."""

from __future__ import annotations

import re
from collections.abc import Sequence

from maoocr.ocr.types import RUNNING_TYPES, Block, OCRLine, Table

_BULLET = re.compile(r"^\s*([•●▪◦‣■□➢►\-–—*·])\s+")
_NUMBERED = re.compile(r"^\s*(\(?\d{1,3}[.)]|\(?[a-z][.)])\s+")
_HYPHEN_END = re.compile(r"(?<=[^\W\d_])[-‐­]$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uff00-\uffef]")


def join_lines(lines: Sequence[str]) -> str:
    """Lines of one paragraph as flowing text: a word broken by a hyphen at a line end is joined again; CJK
    lines join without a space."""
    out = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if not out:
            out = line
        elif _HYPHEN_END.search(out) and line[0].islower():
            out = out[:-1] + line
        elif _CJK.match(out[-1]) and _CJK.match(line[0]):
            out += line
        else:
            out += " " + line
    return out


def list_items(lines: Sequence[str]) -> list[str] | None:
    """The items of a block whose lines start with bullets (or two or more numbers), continuation lines
    joined to their item; None when the block is not a list."""
    starts = [bool(_BULLET.match(line)) for line in lines]
    if not starts or not starts[0]:
        numbered = [bool(_NUMBERED.match(line)) for line in lines]
        if not numbered or not numbered[0] or sum(numbered) < 2:
            return None
        starts = numbered
    items: list[list[str]] = []
    for line, start in zip(lines, starts, strict=True):
        if start or not items:
            items.append([line])
        else:
            items[-1].append(line)
    return [join_lines(item) for item in items]


def table_text(table: Table) -> str:
    """Rows on lines, cells separated by tabs: what a search index or a spreadsheet paste expects."""
    grid = [[""] * table.cols for _ in range(table.rows)]
    for cell in table.cells:
        if cell.row < table.rows and cell.col < table.cols:
            grid[cell.row][cell.col] = cell.text.replace("\t", " ").replace("\n", " ")
    return "\n".join("\t".join(row).rstrip() for row in grid)


def block_text(kind: str, lines: Sequence[str], table: Table | None = None) -> str:
    if table is not None:
        return table_text(table)
    if kind in ("table", "figure", "equation"):
        return "\n".join(line.strip() for line in lines if line.strip())
    items = list_items(lines) if kind in ("text", "list", "reference") else None
    if items is not None:
        return "\n".join(items)
    return join_lines(lines)


def page_text(blocks: Sequence[Block], keep_running: bool = False) -> str:
    """Blocks in reading order, separated by blank lines."""
    return _join_blocks([b.text for b in blocks if b.text and (keep_running or b.type not in RUNNING_TYPES)])


def _join_blocks(parts: Sequence[str]) -> str:
    """Blank lines between blocks, except where a word broken at the foot of a column goes on in the next."""
    out = ""
    for part in parts:
        if out and _HYPHEN_END.search(out) and part[:1].islower():
            out = out[:-1] + part
        else:
            out = f"{out}\n\n{part}" if out else part
    return out


def page_markdown(blocks: Sequence[Block], lines: Sequence[OCRLine], keep_running: bool = False) -> str:
    heights = _line_heights(blocks, lines)
    body = sorted(heights.get(b.index, 0.0) for b in blocks if b.type == "text") or [0.0]
    body_height = body[len(body) // 2]
    titles = [b for b in blocks if b.type == "title" and b.text]
    top_height = max((heights.get(b.index, 0.0) for b in titles), default=0.0)
    parts = []
    for block in blocks:
        if not block.text or (block.type in RUNNING_TYPES and not keep_running):
            continue
        parts.append(_block_markdown(block, heights.get(block.index, 0.0), body_height, top_height))
    return _join_blocks(parts)


def _block_markdown(block: Block, height: float, body_height: float, top_height: float) -> str:
    text = block.text
    if block.type == "title":
        big = height >= max(1.5 * body_height, top_height * 0.95) and height > 0
        return ("# " if big else "## ") + " ".join(text.split())
    if block.table is not None:
        return block.table.markdown
    if block.type in ("table", "figure") or block.type in RUNNING_TYPES:
        return text
    if block.type == "equation":
        return f"$$\n{text}\n$$"
    if "\n" in text:  # a list (block_text puts one item per line)
        return "\n".join(_list_line(item) for item in text.split("\n"))
    return _escape_start(text)


def _list_line(item: str) -> str:
    bullet = _BULLET.match(item)
    if bullet:
        return "- " + item[bullet.end():]
    numbered = _NUMBERED.match(item)
    return item if numbered else "- " + item


def _escape_start(text: str) -> str:
    # A paragraph that happens to start like markdown syntax must stay a paragraph.
    return "\\" + text if text[:1] in "#>|" or re.match(r"^\d+\.\s", text) else text


def _line_heights(blocks: Sequence[Block], lines: Sequence[OCRLine]) -> dict[int, float]:
    """Median line height per block index (upright heights: the shorter side of each line's polygon box)."""
    by_block: dict[int, list[float]] = {}
    for line in lines:
        xs = [p[0] for p in line.polygon]
        ys = [p[1] for p in line.polygon]
        by_block.setdefault(line.block, []).append(min(max(xs) - min(xs), max(ys) - min(ys)))
    return {k: sorted(v)[len(v) // 2] for k, v in by_block.items()}
