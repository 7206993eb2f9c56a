"""The layout model's regions, checked against the page's lines, and each line's region.

The model (trained on Chinese documents) errs on other layouts, so its answers are weighed against what the
lines show: a text region drawn over two columns it also found one by one gives way to them; a "table" whose
lines read as prose, or with no line at all, is no table; a "figure" full of text is no figure. Tables it missed
are added from rows of aligned cells.
"""

from __future__ import annotations

from collections.abc import Sequence

from maoocr.ocr.geometry import area, centre_y, intersection, share, union
from maoocr.ocr.layout import LayoutRegion
from maoocr.ocr.types import Box

RUNNING_BAND = 0.11  # running headers and footers sit in this top or bottom share of the page


def assign_lines(boxes: Sequence[Box], texts: Sequence[str], regions: Sequence[LayoutRegion],
                 height: float) -> tuple[list[LayoutRegion], list[int | None]]:
    """The regions kept, and for each line the index of its region (None: outside every region)."""
    regions = _distinct(regions)
    regions += _aligned_tables(boxes, texts, regions)
    owner = [_owner(box, regions) for box in boxes]
    for _ in range(4):  # a dropped table's lines may fall to a larger table region around it: look again
        wrong = {r for r, region in enumerate(regions)
                 if region.type == "table" and _not_a_table([texts[i] for i, o in enumerate(owner) if o == r])
                 or region.type == "figure" and _full_of_text([texts[i] for i, box in enumerate(boxes)
                                                               if share(box, region.box) >= 0.5])}
        if not wrong:
            break
        regions = [region for r, region in enumerate(regions) if r not in wrong]
        owner = [_owner(box, regions) for box in boxes]
    for i, o in enumerate(owner):  # a running header or footer under a "figure" the model drew is still one
        if o is not None and regions[o].type == "figure" and in_running_band(boxes[i], height):
            owner[i] = None
    return regions, owner


def in_running_band(box: Box, height: float) -> bool:
    return box[3] <= RUNNING_BAND * height or box[1] >= (1 - RUNNING_BAND) * height


def _aligned_tables(boxes: Sequence[Box], texts: Sequence[str],
                    regions: Sequence[LayoutRegion]) -> list[LayoutRegion]:
    """Tables the model missed: three or more rows in a row of three or more segments each, the segments of
    one row under those of the row above. Prose in columns aligns the same way and is set aside later."""
    tables = [r.box for r in regions if r.type == "table"]
    free = [i for i, box in enumerate(boxes) if not any(share(box, t) >= 0.5 for t in tables)]
    rows: list[list[int]] = []
    for i in sorted(free, key=lambda k: centre_y(boxes[k])):
        if rows and abs(centre_y(boxes[rows[-1][0]]) - centre_y(boxes[i])) < 0.5 * (boxes[i][3] - boxes[i][1]):
            rows[-1].append(i)
        else:
            rows.append([i])
    found: list[LayoutRegion] = []
    run: list[list[int]] = []
    for row in rows + [[]]:
        if len(row) >= 3 and (not run or _aligned(run[-1], row, boxes)):
            run.append(row)
            continue
        if len(run) >= 3:
            start = rows.index(run[0])
            header = rows[start - 1] if start else []  # column heads often fewer: joined by the detector
            if len(header) >= 2 and _aligned(header, run[0], boxes, need=1):
                run.insert(0, header)
            found.append(LayoutRegion("table", union(boxes, [i for r in run for i in r]), 0.5))
        run = [row] if len(row) >= 3 else []
    return found


def _aligned(above: list[int], below: list[int], boxes: Sequence[Box], need: int = 2) -> bool:
    """Most segments of `below` sit under a segment of `above`, and the rows are close."""
    height = max(boxes[i][3] - boxes[i][1] for i in above + below)
    if min(boxes[i][1] for i in below) - max(boxes[i][3] for i in above) > 2.5 * height:
        return False
    under = sum(any(min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0]) > 0 for j in above) for i in below)
    return under >= max(need, 0.6 * len(below))


def _full_of_text(texts: Sequence[str]) -> bool:
    """More text than a photo's or a chart's labels: the model took a page area of text for a figure."""
    return len(texts) >= 6 and sum(len(t) for t in texts) >= 150


def _not_a_table(texts: Sequence[str]) -> bool:
    """No lines, or lines that read as prose: mostly letters and several words a line (a narrow column's
    sentences, cut short by the detector at stretched spaces), where a table's rows hold numbers and its
    cells few words."""
    if not texts:
        return True
    words = sum(len(text.split()) for text in texts)
    letters = sum(ch.isalpha() for text in texts for ch in text)
    visible = sum(not ch.isspace() for text in texts for ch in text) or 1
    return words >= 2.2 * len(texts) and letters >= 0.75 * visible


def _distinct(regions: Sequence[LayoutRegion]) -> list[LayoutRegion]:
    """Best-scoring first; a region mostly inside a kept one of the same type is the same region found twice,
    and a table mostly over a surer text region is prose the model also took for a table."""
    regions = [r for r in regions if not _merged_columns(r, regions)]
    kept: list[LayoutRegion] = []
    for region in sorted(regions, key=lambda r: -r.score):
        size = area(region.box) or 1.0
        if any(intersection(k.box, region.box) > 0.8 * size and (k.type == region.type) or
               intersection(k.box, region.box) > 0.5 * size and k.type == "text" and region.type == "table"
               for k in kept):
            continue
        kept.append(region)
    return kept


def _merged_columns(region: LayoutRegion, regions: Sequence[LayoutRegion]) -> bool:
    """A text region drawn over two columns that the model also found one by one."""
    if region.type != "text":
        return False
    inside = [r.box for r in regions if r is not region and r.type == "text"
              and intersection(r.box, region.box) > 0.8 * (area(r.box) or 1.0)]
    return any(a[2] <= b[0] + 0.1 * (b[2] - b[0]) for a in inside for b in inside if a is not b)


def _owner(box: Box, regions: Sequence[LayoutRegion]) -> int | None:
    """The region holding most of the line (at least half of it); a table takes every line in it (its cells
    may have been found as text regions too), else the smaller region wins near-ties, being the more specific
    one (a caption inside a figure's box)."""
    best, best_key = None, None
    for r, region in enumerate(regions):
        inside = share(box, region.box)
        if inside < 0.5:
            continue
        key = (region.type == "table", round(inside / 0.15), -area(region.box))
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best
