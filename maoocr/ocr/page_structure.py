"""From text lines and layout regions to typed blocks in reading order.

Lines go to the layout region that holds most of them; a text region is cut into paragraphs (the line-level
reading order of `reading_order` keeps a region that the model drew over two columns from interleaving them);
lines outside every region are grouped the same way. Running elements (headers, footers, page numbers) are
typed by the model or by their place and size on the page.

Block order follows Breuel's partial order ("High performance document layout analysis", 2003): a block comes
before another when it is above it and they share a column, or when it lies left of it and no block between them
vertically spans both. Figures, tables and captions float: they do not cut the columns that text flows through
around them, and are placed after the flow block above them that ends a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

from maoocr.ocr.geometry import centre_y, union, x_overlap
from maoocr.ocr.layout import LayoutRegion
from maoocr.ocr.reading_order import order_lines
from maoocr.ocr.regions import RUNNING_BAND, assign_lines
from maoocr.ocr.types import RUNNING_TYPES, Box, BlockType

FLOATS: frozenset[str] = frozenset({"figure", "caption", "table", "table_caption"})
_SPLIT_INTO_PARAGRAPHS: frozenset[str] = frozenset({"text", "reference", "list"})
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?[-–—]?\s*(?:\d{1,4}|[ivxlc]{1,6})\s*[-–—]?\s*(?:(?:of|/)\s*\d{1,4})?\s*$",
                          re.IGNORECASE)
_MID_SENTENCE = re.compile(r"[a-z,\-]\s*$")  # a line that ends like this runs on in the next block


@dataclass
class Unit:
    """A block being built: its type, its lines in reading order, its box (upright page pixels)."""

    type: BlockType
    lines: list[int]
    box: Box
    region: LayoutRegion | None = field(default=None, repr=False)


@dataclass
class PageLayout:
    units: list[Unit]  # reading order; running headers first and footers last
    columns: int


def structure_page(boxes: Sequence[Box], texts: Sequence[str], regions: Sequence[LayoutRegion],
                   size: tuple[int, int]) -> PageLayout:
    """Typed units in reading order for lines `boxes`/`texts` of an upright page of `size` (w, h)."""
    regions, owner = assign_lines(boxes, texts, regions, size[1])
    units: list[Unit] = []
    for r, region in enumerate(regions):
        members = [i for i, o in enumerate(owner) if o == r]
        if not members and region.type not in ("figure", "table"):
            continue
        if not members:
            units.append(Unit(region.type, [], region.box, region=region))
        elif region.type in _SPLIT_INTO_PARAGRAPHS:
            # A column found by the model: only a gutter seen in several rows splits it (justified text's
            # stretched spaces, cut by the detector, line up in two rows now and then).
            for paragraph in _paragraphs([boxes[i] for i in members], min_rows=3):
                lines = [members[k] for k in paragraph]
                units.append(Unit(region.type, lines, _within(region.box, union(boxes, lines)), region=region))
        else:
            lines = [members[k] for block in _paragraphs([boxes[i] for i in members]) for k in block]
            box = region.box if region.type in ("figure", "table") else union(boxes, lines)
            units.append(Unit(region.type, lines, box, region=region))
    loose = [i for i, o in enumerate(owner) if o is None]
    for paragraph in _paragraphs([boxes[i] for i in loose]):
        lines = [loose[k] for k in paragraph]
        units.append(Unit("text", lines, union(boxes, lines)))
    body = median(box[3] - box[1] for box in boxes) if boxes else 0.0  # every line belongs to a unit
    _type_by_geometry(units, boxes, texts, size[1], body)
    units = _pair_labels_with_values(units, boxes, texts)
    ordered = _merge_split_paragraphs(_reading_order(units, texts, body), boxes)
    return PageLayout(ordered, _count_columns(ordered, size))


def _paragraphs(boxes: Sequence[Box], min_rows: int = 2) -> list[list[int]]:
    # Newspaper gutters can be narrower than a line is tall; rows of lines that keep apart still make one.
    return order_lines(boxes, min_gutter=0.6, min_gutter_rows=min_rows)


def _within(region: Box, lines: Box) -> Box:
    """The lines' box, kept inside the region's columns: one stray line run across the gutter must not make
    the block look wider than its column."""
    x0, x1 = max(lines[0], region[0]), min(lines[2], region[2])
    return (x0, lines[1], x1, lines[3]) if x1 > x0 else lines


def _type_by_geometry(units: list[Unit], boxes: Sequence[Box], texts: Sequence[str], height: float,
                      body: float) -> None:
    """Types the model did not give: headers, footers and page numbers (short lines of body-sized type in the
    top or bottom band, apart from the body) and titles (a few lines of much larger type). `body` is the median
    line height."""
    for unit in units:
        text = " ".join(texts[i] for i in unit.lines).strip()
        if unit.type in ("header", "footer") and unit.lines:
            tall = max(boxes[i][3] - boxes[i][1] for i in unit.lines) > 1.3 * body
            if _PAGE_NUMBER.match(text):
                unit.type = "page_number"
            elif tall or (unit.type == "header" and unit.box[1] > 0.2 * height) or \
                    (unit.type == "footer" and unit.box[3] < 0.8 * height):
                # A letterhead in large type, or a "header" in mid-page, is part of the page's content.
                unit.type = "title" if tall and unit.box[1] < 0.5 * height else "text"
            continue
        if unit.type not in ("text", "title") or not unit.lines:
            continue
        line_height = median(boxes[i][3] - boxes[i][1] for i in unit.lines)
        if unit.type == "text" and len(unit.lines) <= 3 and line_height >= 1.5 * body and len(text) <= 200:
            unit.type = "title"
        elif unit.type == "title" and line_height < 1.15 * body and (len(text) > 60 or len(unit.lines) > 2):
            unit.type = "text"  # body-sized and long: a paragraph the model took for a heading
        if len(unit.lines) > 2 or len(text) > 160:
            continue
        top, bottom = unit.box[1], unit.box[3]
        in_top = bottom <= RUNNING_BAND * height
        in_bottom = top >= (1 - RUNNING_BAND) * height
        if not (in_top or in_bottom):
            continue
        if _PAGE_NUMBER.match(text):
            unit.type = "page_number"
            continue
        if line_height > 1.3 * body or not _apart(unit, units, body, below=in_top):
            continue  # a big title at the top, or text that runs on into the body
        if in_top and any(o.box[3] <= unit.box[1] + 0.5 * body and o.lines and
                          max(boxes[i][3] - boxes[i][1] for i in o.lines) > 1.3 * body for o in units):
            continue  # under a title in large type: a letterhead's address line, not a running header
        unit.type = "header" if in_top else "footer"


def _apart(unit: Unit, units: Sequence[Unit], body: float, *, below: bool) -> bool:
    """No other unit within a line's height on the body side (above for a footer, below for a header)."""
    for other in units:
        if other is unit or not other.lines:
            continue
        gap = other.box[1] - unit.box[3] if below else unit.box[1] - other.box[3]
        if -0.5 * body < gap < 0.9 * body and x_overlap(unit.box, other.box):
            return False
    return True


def _before(a: Box, b: Box, spanners: Sequence[Box]) -> bool:
    if x_overlap(a, b):
        return centre_y(a) < centre_y(b)
    if (a[0] + a[2]) / 2.0 >= (b[0] + b[2]) / 2.0:
        return False
    low, high = sorted((centre_y(a), centre_y(b)))
    return not any(c is not a and c is not b and low < centre_y(c) < high and x_overlap(c, a) and x_overlap(c, b)
                   for c in spanners)


def _topological(boxes: list[Box], dividers: Sequence[Box] = ()) -> list[int]:
    """Kahn's sort of Breuel's partial order; `dividers` are not ordered but part the page like a full-width
    title does (a table across the page between an invoice's header fields and its totals)."""
    n = len(boxes)
    wide = [b for b in boxes if any(x_overlap(b, o) for o in boxes if o is not b)] + list(dividers)
    after: list[list[int]] = [[] for _ in range(n)]
    blockers = [0] * n
    for i in range(n):
        for j in range(n):
            if i != j and _before(boxes[i], boxes[j], wide):
                after[i].append(j)
                blockers[j] += 1
    order: list[int] = []
    done = [False] * n
    while len(order) < n:
        ready = [i for i in range(n) if not done[i] and blockers[i] == 0]
        if not ready:  # a cycle (overlapping boxes): take the top-most remaining block
            ready = [i for i in range(n) if not done[i]]
        pick = min(ready, key=lambda i: (boxes[i][1], boxes[i][0]))
        done[pick] = True
        order.append(pick)
        for j in after[pick]:
            blockers[j] -= 1
    return order


def _reading_order(units: list[Unit], texts: Sequence[str], body: float) -> list[Unit]:
    running = [u for u in units if u.type in RUNNING_TYPES]
    heads = sorted((u for u in running if u.type == "header" or _is_top(u, units)), key=lambda u: (u.box[1], u.box[0]))
    feet = sorted((u for u in running if u not in heads), key=lambda u: (u.box[1], u.box[0]))
    flow = [u for u in units if u.type not in RUNNING_TYPES and u.type not in FLOATS]
    floats = sorted((u for u in units if u.type in FLOATS), key=lambda u: (u.box[1], u.box[0]))
    left = min((u.box[0] for u in flow), default=0.0)
    right = max((u.box[2] for u in flow), default=0.0)
    dividers = [u.box for u in floats if u.box[2] - u.box[0] >= 0.8 * (right - left)]
    ordered = []
    for band in _bands(flow, 1.0 * body):
        ordered += [band[i] for i in _topological([u.box for u in band], dividers)]
    for unit in floats:
        ordered.insert(_float_slot(unit, ordered, texts), unit)
    return heads + ordered + feet


def _bands(units: list[Unit], min_gap: float) -> list[list[Unit]]:
    """Units cut into horizontal bands at whitespace across the whole page, taller than `min_gap` (a paragraph
    break that happens to line up in two columns is narrower): a newspaper's upper stories end before the
    lower ones begin, whatever their columns."""
    bands: list[list[Unit]] = []
    bottom = None
    for unit in sorted(units, key=lambda u: u.box[1]):
        if bottom is None or unit.box[1] - bottom >= min_gap:
            bands.append([unit])
            bottom = unit.box[3]
        else:
            bands[-1].append(unit)
            bottom = max(bottom, unit.box[3])
    return bands


def _pair_labels_with_values(units: list[Unit], boxes: Sequence[Box], texts: Sequence[str]) -> list[Unit]:
    """A column of short labels beside a column of figures, row for row (an invoice's totals), reads row by
    row. Columns of running text never qualify (their gutter is narrow against their lines), nor do two
    blocks of words side by side (an address beside invoice details)."""
    out = list(units)
    for a in units:
        if a not in out or a.type != "text" or not 2 <= len(a.lines) <= 30:
            continue
        width = max(boxes[i][2] - boxes[i][0] for i in a.lines)
        for b in units:
            if b is a or b not in out or b.type != "text" or not 0.5 * width < b.box[0] - a.box[2] < 4 * width:
                continue
            if not _mostly_figures([texts[i] for i in b.lines]):
                continue
            pairs = sum(any(abs(centre_y(boxes[i]) - centre_y(boxes[j])) < 0.5 * (boxes[i][3] - boxes[i][1])
                            for j in b.lines) for i in a.lines)
            if pairs >= 2 and pairs >= 0.6 * len(b.lines):
                height = median(boxes[i][3] - boxes[i][1] for i in a.lines + b.lines)
                a.lines = sorted(a.lines + b.lines, key=lambda i: (round(centre_y(boxes[i]) / height), boxes[i][0]))
                a.box = union(boxes, a.lines)
                out.remove(b)
                break
    return out


def _mostly_figures(texts: Sequence[str]) -> bool:
    digits = sum(ch.isdigit() for text in texts for ch in text)
    return digits >= 0.5 * sum(ch.isalnum() for text in texts for ch in text)


def _merge_split_paragraphs(units: list[Unit], boxes: Sequence[Box]) -> list[Unit]:
    """One paragraph (or title) cut into two blocks is joined again: the second starts one line pitch under
    the first, at the same left edge (titles: anywhere over it, being often centred)."""
    merged: list[Unit] = []
    for unit in units:
        prev = merged[-1] if merged else None
        if prev is not None and prev.type == unit.type and unit.type in ("text", "title") and prev.lines \
                and unit.lines:
            last, first = boxes[prev.lines[-1]], boxes[unit.lines[0]]
            height = min(last[3] - last[1], first[3] - first[1])
            aligned = unit.type == "title" or abs(first[0] - prev.box[0]) < 1.5 * height
            if 0 <= first[1] - last[3] < 0.75 * height + 1 and aligned and x_overlap(prev.box, unit.box):
                prev.lines += unit.lines
                prev.box = union(boxes, prev.lines)
                continue
        merged.append(unit)
    return merged


def _is_top(unit: Unit, units: Sequence[Unit]) -> bool:
    body = [u for u in units if u.type not in RUNNING_TYPES and u.lines]
    return bool(body) and unit.box[3] <= min(u.box[1] for u in body)


def _float_slot(unit: Unit, ordered: list[Unit], texts: Sequence[str]) -> int:
    """After the latest block above the float in its columns; later still while that block's sentence runs on,
    so a figure never splits a sentence."""
    above = [k for k, u in enumerate(ordered) if u.box[3] <= unit.box[1] + 0.5 * (unit.box[3] - unit.box[1])
             and (x_overlap(u.box, unit.box) or u.type in FLOATS and abs(u.box[3] - unit.box[1]) < 50)]
    if not above:
        return 0
    slot = max(above) + 1
    while slot < len(ordered) and ordered[slot - 1].type not in FLOATS and ordered[slot - 1].lines:
        last = texts[ordered[slot - 1].lines[-1]]
        if not _MID_SENTENCE.search(last):
            break
        slot += 1
    return slot


def _count_columns(units: Sequence[Unit], size: tuple[int, int]) -> int:
    """The number of side-by-side text blocks that covers the most page height (a full-width title over three
    columns is a three-column page)."""
    text = [u.box for u in units if u.type in ("text", "list", "reference", "equation") and u.lines]
    if not text:
        return 0
    height_by_count: dict[int, float] = {}
    ys = sorted({y for b in text for y in (b[1], b[3])})
    for y0, y1 in zip(ys, ys[1:], strict=False):
        mid = (y0 + y1) / 2.0
        spans = sorted((b[0], b[2]) for b in text if b[1] <= mid <= b[3])
        count, reach = 0, -1.0
        for x0, x1 in spans:
            if x0 >= reach - 0.02 * size[0]:
                count += 1
            reach = max(reach, x1)
        if count:
            height_by_count[count] = height_by_count.get(count, 0.0) + (y1 - y0)
    return max(height_by_count, key=lambda c: (height_by_count[c], c)) if height_by_count else 0
