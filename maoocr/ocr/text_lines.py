"""Words with boxes -> text-line segments: words on one baseline form a line, and a line is cut where the gap
between two words is much wider than a space, so columns and table cells stay separate segments.

Neighbours in the text stream that sit side by side are chained first (vectorised: most of a page), then the
chains are grouped into lines by vertical overlap, which also catches text drawn out of visual order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maoocr.ocr.base import RawLine
from maoocr.ocr.geometry import upright_to_input
from maoocr.ocr.types import Point

# Fractions of the line height (about 1.15 em for the loose boxes pdfium gives).
SPLIT_GAP = 0.8  # wider gaps end a segment: column gutters and table cell padding, not justified spaces
# Words next to each other in the text stream keep together across wider gaps when the gap is like the others of
# that run: justified narrow columns stretch every space past SPLIT_GAP alike, while a table row's cell gaps stand
# out against the spaces inside its cells (and the stream jumps elsewhere at a column gutter).
STREAM_GAP = 4.0
STREAM_GAP_RATIO = 2.5
SPACE_GAP = 0.1  # narrower gaps between words that are apart in the text stream join without a space
MIN_OVERLAP = 0.5  # vertical overlap, as a share of the smaller height, for a word to join a line


@dataclass
class Word:
    """Words on the upright page: box (x0, y0, x1, y1, y down), text, stream positions of its first and last word."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    first: int
    last: int

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def text_lines(boxes: np.ndarray, texts: list[str], directions: np.ndarray,
               size: tuple[int, int]) -> tuple[list[RawLine], int]:
    """Line segments from words in stream order (`boxes` in pixels of the page, `directions` the clockwise turn
    that makes each word upright, -1 for "as its neighbours"), and the dominant direction. Polygons are the
    corners clockwise from the top-left of the upright segment, in the page's pixels."""
    if not texts:
        return [], 0
    directions = _fill_directions(directions)
    chars = np.bincount(directions // 90, weights=np.fromiter(map(len, texts), np.float64, len(texts)), minlength=4)
    dominant = 90 * int(np.argmax(chars))  # ties go to the smaller turn, 0 first
    lines: list[RawLine] = []
    for direction in sorted((90 * int(q) for q in np.nonzero(chars)[0]), key=lambda d: d != dominant):
        idx = np.nonzero(directions == direction)[0]
        upright = to_upright(boxes[idx], direction, size)
        words = _chain(upright, [texts[i] for i in idx], idx)
        for seg in group_lines(words):
            corners: list[Point] = [(seg.x0, seg.y0), (seg.x1, seg.y0), (seg.x1, seg.y1), (seg.x0, seg.y1)]
            if direction:
                corners = upright_to_input(corners, direction, size)
            polygon = [(round(x, 1), round(y, 1)) for x, y in corners]
            lines.append(RawLine(text=seg.text, polygon=polygon, confidence=1.0))
    return lines, dominant


def to_upright(boxes: np.ndarray, degrees: int, size: tuple[int, int]) -> np.ndarray:
    """Pixel boxes (n, 4) on a page of `size` -> the same boxes on the page turned clockwise by `degrees`."""
    width, height = size
    x0, y0, x1, y1 = boxes.T
    if degrees == 90:
        return np.stack([height - y1, x0, height - y0, x1], axis=1)
    if degrees == 180:
        return np.stack([width - x1, height - y1, width - x0, height - y0], axis=1)
    if degrees == 270:
        return np.stack([y0, width - x1, y1, width - x0], axis=1)
    return boxes


def _fill_directions(directions: np.ndarray) -> np.ndarray:
    """Single characters take the direction of the word before them (of the first word with one, at the start)."""
    known = directions >= 0
    if not known.any():
        return np.zeros_like(directions)
    pos = np.where(known, np.arange(directions.size), -1)
    np.maximum.accumulate(pos, out=pos)
    pos[pos < 0] = int(np.argmax(known))
    return directions[pos]


def _chain(boxes: np.ndarray, texts: list[str], order: np.ndarray) -> list[Word]:
    """Stream neighbours on one baseline become one Word when their gap is small, or no wider than the spaces
    of their run of stream neighbours (justified text)."""
    x0, y0, x1, y1 = boxes.T
    h = np.maximum(np.minimum(y1[:-1] - y0[:-1], y1[1:] - y0[1:]), 1e-6)
    overlap = np.minimum(y1[:-1], y1[1:]) - np.maximum(y0[:-1], y0[1:])
    gap = x0[1:] - x1[:-1]
    neighbours = (order[1:] == order[:-1] + 1) & (overlap >= MIN_OVERLAP * h) & (gap > -0.2 * h)
    joined = neighbours & (gap <= SPLIT_GAP * h)
    wide = np.nonzero(neighbours & ~joined & (gap <= STREAM_GAP * h))[0]
    if wide.size:
        runs = np.concatenate(([0], np.cumsum(~neighbours)))[:-1]  # run id of each gap's left word
        # Against the run's narrowest gap: justified spaces are all alike, while a table row's header or cells
        # with spaces in them would make a median as wide as the cell gaps themselves.
        narrowest = np.full(int(runs.max()) + 1, np.inf)
        np.minimum.at(narrowest, runs[neighbours], np.maximum(gap[neighbours], 0.0))
        reference = np.maximum(narrowest[runs[wide]], 0.05 * h[wide])
        joined[wide[gap[wide] <= STREAM_GAP_RATIO * reference]] = True
    starts = np.concatenate(([0], np.nonzero(~joined)[0] + 1))
    ends = np.concatenate((starts[1:], [len(texts)]))
    lo = [a.tolist() for a in (np.minimum.reduceat(x0, starts), np.minimum.reduceat(y0, starts))]
    hi = [a.tolist() for a in (np.maximum.reduceat(x1, starts), np.maximum.reduceat(y1, starts))]
    first, last = order[starts].tolist(), order[ends - 1].tolist()
    return [Word(lo[0][k], lo[1][k], hi[0][k], hi[1][k], " ".join(texts[s:e]), first[k], last[k])
            for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True))]


@dataclass
class Segment:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str


class _Line:
    __slots__ = ("words", "top", "bottom")

    def __init__(self, word: Word) -> None:
        self.words = [word]
        self.top, self.bottom = word.y0, word.y1

    def overlap(self, word: Word) -> float:
        inter = min(self.bottom, word.y1) - max(self.top, word.y0)
        return inter / max(1e-6, min(self.bottom - self.top, word.height))

    def add(self, word: Word) -> None:
        self.words.append(word)
        # A running mean band, not the union: a tall word must not make the line swallow the next line down.
        n = len(self.words)
        self.top += (word.y0 - self.top) / n
        self.bottom += (word.y1 - self.bottom) / n


def group_lines(words: Sequence[Word]) -> list[Segment]:
    """Segments top to bottom, left to right within a line. Words are grouped by vertical overlap, sorted along
    the line, and cut at gaps wider than SPLIT_GAP x the smaller neighbour's height."""
    lines: list[_Line] = []
    active: list[_Line] = []
    for word in sorted(words, key=lambda w: (w.y0 + w.y1) / 2.0):
        active = [line for line in active if line.bottom > word.y0]
        best, best_overlap = None, MIN_OVERLAP
        for line in active:
            ov = line.overlap(word)
            if ov >= best_overlap:
                best, best_overlap = line, ov
        if best is None:
            best = _Line(word)
            lines.append(best)
            active.append(best)
        else:
            best.add(word)
    segments: list[Segment] = []
    for line in lines:
        segments.extend(_split(sorted(line.words, key=lambda w: (w.x0, w.first))))
    segments.sort(key=lambda s: (round(s.y0), s.x0))
    return segments


def _split(words: list[Word]) -> list[Segment]:
    out: list[Segment] = []
    current: list[Word] = []
    parts: list[str] = []
    for word in words:
        if current:
            prev = current[-1]
            height = min(prev.height, word.height)
            if _duplicate(prev, word, height):
                continue  # text drawn twice with a small offset (fake bold, shadows)
            gap = word.x0 - prev.x1
            if gap > SPLIT_GAP * height:
                out.append(_segment(current, parts))
                current, parts = [], []
            elif gap >= SPACE_GAP * height or word.first == prev.last + 1:
                parts.append(" ")
        current.append(word)
        parts.append(word.text)
    if current:
        out.append(_segment(current, parts))
    return out


def _duplicate(a: Word, b: Word, height: float) -> bool:
    return a.text == b.text and abs(a.x0 - b.x0) < 0.2 * height and abs(a.y0 - b.y0) < 0.2 * height


def _segment(words: list[Word], parts: list[str]) -> Segment:
    return Segment(min(w.x0 for w in words), min(w.y0 for w in words), max(w.x1 for w in words),
                   max(w.y1 for w in words), "".join(parts))
