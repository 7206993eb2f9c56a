"""Reading order for line boxes: columns found from gutters are read one after another, titles stay in place.

Works on axis-aligned boxes (x0, y0, x1, y1) of an upright page. A gutter is a vertical strip that lines in at
least two rows sit on both sides of without crossing. Lines that cross a gutter within its vertical extent
(titles, full-width paragraphs) split the page into bands; inside a band each column is read top to bottom,
columns left to right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

Box = tuple[float, float, float, float]


@dataclass
class _Gutter:
    x0: float  # strip free of text in every witnessing row
    x1: float
    y0: float  # vertical extent of the columns it separates
    y1: float
    rows: int

    @property
    def mid(self) -> float:
        return (self.x0 + self.x1) / 2.0


def order_lines(boxes: Sequence[Box], *, min_gutter: float = 1.0, min_gutter_rows: int = 2,
                paragraph_gap: float = 0.75) -> list[list[int]]:
    """Indices of `boxes` grouped into blocks, in reading order.

    Distances are in units of the median line height: a gutter is at least `min_gutter` wide; a vertical gap
    larger than `paragraph_gap` between consecutive lines starts a new block.
    """
    if not boxes:
        return []
    height = max(1.0, median(b[3] - b[1] for b in boxes))
    gutters = _find_gutters(boxes, height * min_gutter, min_gutter_rows, reach=1.5 * height)
    columns = [_column_of(box, gutters) for box in boxes]

    blocks: list[list[int]] = []
    band: list[int] = []
    spanning: list[int] = []
    for i in _row_order(boxes, range(len(boxes))):
        if columns[i] is None:
            if band:
                blocks.extend(_flush_band(band, boxes, columns, height * paragraph_gap))
                band = []
            spanning.append(i)
        else:
            if spanning:
                blocks.extend(_paragraphs(spanning, boxes, height * paragraph_gap))
                spanning = []
            band.append(i)
    if band:
        blocks.extend(_flush_band(band, boxes, columns, height * paragraph_gap))
    if spanning:
        blocks.extend(_paragraphs(spanning, boxes, height * paragraph_gap))
    return blocks


def _v_overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def _same_row(a: Box, b: Box) -> bool:
    return _v_overlap(a[1], a[3], b[1], b[3]) >= 0.5 * min(a[3] - a[1], b[3] - b[1])


def _find_gutters(boxes: Sequence[Box], min_width: float, min_rows: int, reach: float) -> list[_Gutter]:
    # Each pair of horizontally adjacent lines in one row witnesses a gap; narrow gaps are clustered first so a
    # wide gap (a row with an empty middle column) confirms existing gutters instead of merging them.
    gaps: list[tuple[float, float, float, float]] = []
    for i, a in enumerate(boxes):
        right = [b for j, b in enumerate(boxes) if j != i and b[0] >= a[2] + min_width and _same_row(a, b)]
        if not right:
            continue
        b = min(right, key=lambda r: r[0])
        between = any(c is not a and c is not b and c[0] < b[0] and c[2] > a[2] and _same_row(a, c) for c in boxes)
        if not between:
            gaps.append((a[2], b[0], min(a[1], b[1]), max(a[3], b[3])))
    clusters: list[_Gutter] = []
    for x0, x1, y0, y1 in sorted(gaps, key=lambda g: g[1] - g[0]):
        hits = [c for c in clusters if x0 < c.x1 and x1 > c.x0]
        if not hits:
            clusters.append(_Gutter(x0, x1, y0, y1, 1))
        for c in hits:
            c.x0, c.x1 = max(c.x0, x0), min(c.x1, x1)
            c.y0, c.y1 = min(c.y0, y0), max(c.y1, y1)
            c.rows += 1
    gutters = [c for c in clusters if c.rows >= min_rows and c.x1 - c.x0 > 0]
    for g in gutters:
        _extend(g, boxes, reach)
    return gutters


def _crosses(box: Box, gutter: _Gutter) -> bool:
    return box[0] < gutter.mid < box[2]


def _extend(gutter: _Gutter, boxes: Sequence[Box], reach: float) -> None:
    """Grow the gutter's vertical extent over nearby lines that keep to one side (a longer column's tail).

    A row where anything crosses the gutter ends it: that row is full-width text, not a column's tail.
    """
    blocked = [any(_crosses(c, gutter) and _same_row(b, c) for c in boxes) for b in boxes]
    changed = True
    while changed:
        changed = False
        for b, row_crossed in zip(boxes, blocked, strict=True):
            if row_crossed or (b[1] >= gutter.y0 and b[3] <= gutter.y1):
                continue
            if b[3] >= gutter.y0 - reach and b[1] <= gutter.y1 + reach:
                gutter.y0, gutter.y1 = min(gutter.y0, b[1]), max(gutter.y1, b[3])
                changed = True


def _column_of(box: Box, gutters: list[_Gutter]) -> int | None:
    """Column index of a line inside a multi-column band, or None when it spans (or no columns are near)."""
    tolerance = 0.3 * (box[3] - box[1])
    active = [g for g in gutters if _v_overlap(box[1], box[3], g.y0, g.y1) > tolerance]
    if not active or any(_crosses(box, g) for g in active):
        return None
    centre = (box[0] + box[2]) / 2.0
    return sum(1 for g in active if g.mid < centre)


def _row_order(boxes: Sequence[Box], indices: Sequence[int]) -> list[int]:
    """Top to bottom; lines sharing a row (e.g. one line split into two boxes) left to right."""
    ordered = sorted(indices, key=lambda i: (boxes[i][1] + boxes[i][3]) / 2.0)
    rows: list[list[int]] = []
    for i in ordered:
        if rows and _same_row(boxes[rows[-1][0]], boxes[i]):
            rows[-1].append(i)
        else:
            rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda k: boxes[k][0])]


def _paragraphs(indices: list[int], boxes: Sequence[Box], gap: float) -> list[list[int]]:
    blocks: list[list[int]] = []
    bottom = 0.0
    for i in indices:
        top, low = boxes[i][1], boxes[i][3]
        if not blocks or top - bottom > gap:
            blocks.append([i])
            bottom = low
        else:
            blocks[-1].append(i)
            bottom = max(bottom, low)
    return blocks


def _flush_band(band: list[int], boxes: Sequence[Box], columns: list[int | None], gap: float) -> list[list[int]]:
    blocks: list[list[int]] = []
    for column in sorted({columns[i] for i in band}):  # type: ignore[type-var]
        members = _row_order(boxes, [i for i in band if columns[i] == column])
        blocks.extend(_paragraphs(members, boxes, gap))
    return blocks
