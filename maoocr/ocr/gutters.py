"""Text lines that the detector ran across a column gutter are cut at the gutter and read again piece by piece.

A text detector joins the lines of two columns when the gutter between them is narrow (newspapers, magazines),
and no reading order can separate them afterwards. A gutter shows in the image as a gap inside such a line that
stays empty for several lines above and below it; a gap between two words does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from maoocr.ocr.base import RawLine
from maoocr.ocr.geometry import bounding_box
from maoocr.ocr.ink import otsu_level
from maoocr.ocr.types import Point

# read(crops) -> (text, confidence) per upright crop
Reader = Callable[[list[Image.Image]], list[tuple[str, float]]]

_WORK_SIDE = 1600  # the ink mask is computed on a copy this size on its long side
_MIN_GAP = 0.5  # a gutter is at least this many (padded) line-box heights wide...
_MIN_SPAN = 5.0  # ...stays empty over at least this many line heights, the line included...
_FLANKED_LINES = 1.5  # ...beside text on both sides for this many line heights' worth of those rows
_MIN_WIDTH = 3.0  # lines shorter than this many heights are never cut


def split_at_gutters(image: Image.Image, lines: Sequence[RawLine], read: Reader) -> list[RawLine]:
    """`lines` on the upright `image`, with every line that crosses a gutter replaced by its pieces."""
    if not lines:
        return list(lines)
    ink, scale = _ink_mask(image)
    out: list[RawLine] = []
    pieces: list[list[Point]] = []
    for line in lines:
        cuts = _gutters_in(line, ink, scale)
        if not cuts or len(line.polygon) != 4:
            out.append(line)
            continue
        x0, _, x1, _ = bounding_box(line.polygon)
        edges = [x0] + [v for cut in cuts for v in cut] + [x1]
        for left, right in zip(edges[::2], edges[1::2], strict=True):
            piece = _slice(line.polygon, (left - x0) / (x1 - x0), (right - x0) / (x1 - x0))
            box = bounding_box(piece)
            if box[2] - box[0] > 0.5 * (box[3] - box[1]):
                pieces.append(piece)
    if pieces:
        for piece, (text, confidence) in zip(pieces, read([_crop(image, piece) for piece in pieces]), strict=True):
            if text.strip():
                out.append(RawLine(text=text, polygon=piece, confidence=confidence))
    return out


def _slice(polygon: Sequence[Point], start: float, end: float) -> list[Point]:
    """The part of a (skewed) line quadrilateral between two fractions of its length, as a quadrilateral."""
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = polygon  # top-left, top-right, bottom-right, bottom-left

    def top(t: float) -> Point:
        return (ax + t * (bx - ax), ay + t * (by - ay))

    def bottom(t: float) -> Point:
        return (dx + t * (cx - dx), dy + t * (cy - dy))

    return [top(start), top(end), bottom(end), bottom(start)]


def _crop(image: Image.Image, quad: Sequence[Point]) -> Image.Image:
    """The quadrilateral warped to an upright rectangle, as the recogniser expects a line."""
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = quad
    width = max(2, round(max(math.dist((ax, ay), (bx, by)), math.dist((dx, dy), (cx, cy)))))
    height = max(2, round(max(math.dist((ax, ay), (dx, dy)), math.dist((bx, by), (cx, cy)))))
    # PIL's QUAD data: upper-left, lower-left, lower-right, upper-right corners of the source.
    return image.transform((width, height), Image.Transform.QUAD, (ax, ay, dx, dy, cx, cy, bx, by),
                           Image.Resampling.BICUBIC)


def _ink_mask(image: Image.Image) -> tuple[np.ndarray, float]:
    scale = min(1.0, _WORK_SIDE / max(image.size))
    gray = image.convert("L")
    if scale < 1.0:
        gray = gray.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                           Image.Resampling.BOX)
    pixels = np.asarray(gray, dtype=np.uint8)
    return pixels < otsu_level(np.bincount(pixels.ravel(), minlength=256).astype(np.float64)), scale


def _gutters_in(line: RawLine, ink: np.ndarray, scale: float) -> list[tuple[float, float]]:
    """(left, right) edges, in image pixels, of the gutters inside the line."""
    x0, y0, x1, y1 = (v * scale for v in bounding_box(line.polygon))
    height = y1 - y0
    if height < 3 or x1 - x0 < _MIN_WIDTH * height:
        return []
    top, bottom = max(0, int(y0)), min(ink.shape[0], int(np.ceil(y1)))
    left, right = max(0, int(x0)), min(ink.shape[1], int(np.ceil(x1)))
    strip = ink[top:bottom, left:right]
    if strip.size == 0:
        return []
    white = strip.sum(axis=0) <= max(1, int(0.04 * strip.shape[0]))  # a speck of noise leaves a column white
    cuts = []
    for start, end in _runs(white):
        if end - start < _MIN_GAP * height or start < 0.3 * height or end > white.size - 0.3 * height:
            continue
        a, b = left + start, left + end
        if _is_gutter(ink, a, b, top, bottom, height):
            cuts.append((a / scale, b / scale))
    return cuts


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate(([False], flags, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _is_gutter(ink: np.ndarray, a: int, b: int, top: int, bottom: int, height: float) -> bool:
    """Columns a..b stay free of ink above and below the line for several line heights, beside text on both
    sides for more than a line: a gutter between columns, not a word gap under a margin or two word gaps that
    happen to line up."""
    core = ink[:, int(a + 0.2 * (b - a)):max(int(a + 0.2 * (b - a)) + 1, int(b - 0.2 * (b - a)))]
    clear = core.sum(axis=1) <= 1  # a speck of noise leaves a row clear
    above = top
    while above > 0 and clear[above - 1]:
        above -= 1
    below = bottom
    while below < clear.size and clear[below]:
        below += 1
    if below - above < _MIN_SPAN * height:
        return False
    flank = max(2, int(height))
    rows = np.r_[above:top, bottom:below]
    both = ink[rows, max(0, a - flank):a].any(axis=1) & ink[rows, b:b + flank].any(axis=1)
    return both.sum() >= _FLANKED_LINES * height
