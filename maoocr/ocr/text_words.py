"""Words of a pdfium text page with their pixel boxes, text direction and character statistics.

Words are the runs between whitespace in pdfium's page text (which already holds generated spaces for wide
gaps); only each word's first and last character boxes are asked for, which keeps a dense page to a few ms.
"""

from __future__ import annotations

import ctypes
import re
from typing import NamedTuple

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

# pdfium marks a hyphen that breaks a word across lines as U+FFFE and joins the two halves: the halves are
# separate words on separate lines, the first one ending in its hyphen again.
_WORD = re.compile("[^\\s\ufffe]+\ufffe?|\ufffe")
# Replacement character, C0/C1 controls (pdfium passes unmapped character codes through), private use, surrogates.
_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff\ud800-\udfff]")
_NOT_ALNUM = re.compile(r"[\W_]")
_SAMPLE = 256  # characters checked with pdfium's own unmapped-glyph flag
_WIDE_WORD = 0.75  # words longer than this many heights per character (+1) are checked for inner gaps
_INNER_GAP = 0.25  # a gap this share of the height inside such a word separates two words
# The same entry point with plain address arguments: ~3x cheaper per call than the typed-pointer binding.
_LOOSE_BOX = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)(
    ctypes.cast(pdfium_c.FPDFText_GetLooseCharBox, ctypes.c_void_p).value)


class CharStats(NamedTuple):
    nonspace: int  # non-space characters in the text layer, hidden ones included
    bad: int  # of those: replacement, control, private-use characters
    alnum: int  # of those: letters and digits
    sampled_unmapped: float  # share of a sample that pdfium flags as glyphs without a Unicode mapping


class Words(NamedTuple):
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1 in rendered-page pixels
    texts: list[str]
    directions: np.ndarray  # clockwise rotation making each word upright: 0/90/180/270; -1 for one character
    hidden_chars: int  # characters left out because nobody can see them
    stats: CharStats


def address(obj: object) -> int:
    return ctypes.cast(obj, ctypes.c_void_p).value or 0


def read_words(textpage: pdfium.PdfTextPage, to_px: tuple[float, ...], size: tuple[int, int],
               hidden_objects: set[int]) -> Words:
    """The visible words of `textpage`; `to_px` maps page space to pixels, `hidden_objects` are addresses of
    text objects whose characters are not drawn."""
    raw = textpage.raw
    n = textpage.count_chars()
    if n <= 0:
        return Words(np.zeros((0, 4)), [], np.zeros(0, dtype=np.int64), 0, CharStats(0, 0, 0, 0.0))
    text = _page_text(textpage, n)
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    nonspace = sum(e - s for s, e in spans)
    hidden = 0
    if hidden_objects:
        spans, hidden = _visible_spans(raw, spans, hidden_objects)
    # Letters and digits counted as the rest: the list of non-alphanumerics is the short one.
    alnum = len(text) - len(_NOT_ALNUM.findall(text))
    stats = CharStats(nonspace, len(_BAD.findall(text)), alnum, _sampled_unmapped(raw, spans))
    if not spans:
        return Words(np.zeros((0, 4)), [], np.zeros(0, dtype=np.int64), hidden, stats)
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e in spans], dtype=np.int64)
    first, last = _char_boxes(raw, starts, to_px), _char_boxes(raw, ends - 1, to_px)
    boxes = np.concatenate([np.minimum(first[:, :2], last[:, :2]), np.maximum(first[:, 2:], last[:, 2:])], axis=1)
    directions = _directions(first, last)
    texts = [text[s:e].replace("\ufffe", "-") for s, e in spans]
    # pdfium inserts spaces for wide gaps, but not always (one TJ array spanning two table cells): words long for
    # their character count are looked at character by character.
    horizontal = (directions == 0) | (directions == 180)
    along = np.where(horizontal, boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    across = np.where(horizontal, boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0])
    wide = np.nonzero((ends - starts > 1) & (along > across * (_WIDE_WORD * (ends - starts) + 1.0)))[0]
    if wide.size:
        boxes, texts, directions = _split_wide(raw, text, spans, boxes, texts, directions, wide, to_px)
    width, height = size
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    on_page = (cx >= -2) & (cx <= width + 2) & (cy >= -2) & (cy <= height + 2)
    if not on_page.all():
        keep = np.nonzero(on_page)[0]
        boxes, directions, texts = boxes[keep], directions[keep], [texts[i] for i in keep]
    return Words(boxes, texts, directions, hidden, stats)


def _page_text(textpage: pdfium.PdfTextPage, n: int) -> str:
    text = textpage.get_text_range(0, n)
    if len(text) != n:  # characters outside the BMP or excluded ones: the bulk text does not align with indices
        text = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 0xFFFD) for i in range(n))
    return text


def _char_boxes(raw: object, indices: np.ndarray, m: tuple[float, ...]) -> np.ndarray:
    """Loose boxes (font ascent to descent) of the given characters, in pixels: (n, 4) x0, y0, x1, y1."""
    out = np.zeros((indices.size, 4), dtype=np.float32)  # FS_RECTF rows: left, top, right, bottom
    base, page = out.ctypes.data, ctypes.cast(raw, ctypes.c_void_p).value
    get = _LOOSE_BOX
    for k, i in enumerate(indices.tolist()):
        get(page, i, base + 16 * k)
    left, top, right, bottom = (out[:, j].astype(np.float64) for j in range(4))
    a, b, c, d, e, f = m
    xs = np.stack([a * left + c * top, a * right + c * bottom]) + e
    ys = np.stack([b * left + d * top, b * right + d * bottom]) + f
    return np.stack([xs.min(axis=0), ys.min(axis=0), xs.max(axis=0), ys.max(axis=0)], axis=1)


def _directions(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    dx = (last[:, 0] + last[:, 2]) - (first[:, 0] + first[:, 2])
    dy = (last[:, 1] + last[:, 3]) - (first[:, 1] + first[:, 3])
    # Text running down the page reads upright after a quarter turn counter-clockwise (270 clockwise).
    out = np.where(np.abs(dx) >= np.abs(dy), np.where(dx > 0, 0, 180), np.where(dy > 0, 270, 90))
    return np.where((np.abs(dx) < 1e-3) & (np.abs(dy) < 1e-3), -1, out).astype(np.int64)


def _visible_spans(raw: object, spans: list[tuple[int, int]], hidden_objects: set[int]) -> tuple[list, int]:
    """Spans with hidden characters cut out, and how many characters were cut."""
    out: list[tuple[int, int]] = []
    hidden = 0
    for s, e in spans:
        start = None
        for i in range(s, e):
            if address(pdfium_c.FPDFText_GetTextObject(raw, i)) in hidden_objects:
                hidden += 1
                if start is not None:
                    out.append((start, i))
                    start = None
            elif start is None:
                start = i
        if start is not None:
            out.append((start, e))
    return out, hidden


def _sampled_unmapped(raw: object, spans: list[tuple[int, int]]) -> float:
    if not spans:
        return 0.0
    # Every k-th word's first character: spread over the page, cheap to pick.
    sample = [s for s, _ in spans[::max(1, len(spans) // _SAMPLE)]]
    return sum(1 for i in sample if pdfium_c.FPDFText_HasUnicodeMapError(raw, i) == 1) / len(sample)


def _split_wide(raw: object, text: str, spans: list[tuple[int, int]], boxes: np.ndarray, texts: list[str],
                directions: np.ndarray, wide: np.ndarray, to_px: tuple[float, ...]
                ) -> tuple[np.ndarray, list[str], np.ndarray]:
    new_boxes: list[np.ndarray] = []
    new_texts: list[str] = []
    new_dirs: list[int] = []
    wide_set = set(wide.tolist())
    for k, (s, e) in enumerate(spans):
        if k not in wide_set:
            new_boxes.append(boxes[k])
            new_texts.append(texts[k])
            new_dirs.append(int(directions[k]))
            continue
        direction = int(directions[k])
        chars = _char_boxes(raw, np.arange(s, e), to_px)
        cut = s
        for j in range(1, e - s):
            prev, cur = chars[j - 1], chars[j]
            if direction in (0, 180):
                gap = cur[0] - prev[2] if direction == 0 else prev[0] - cur[2]
                size = cur[3] - cur[1]
            else:
                gap = cur[1] - prev[3] if direction == 270 else prev[1] - cur[3]
                size = cur[2] - cur[0]
            if gap > _INNER_GAP * size:
                new_boxes.append(_bounds(chars[cut - s:j]))
                new_texts.append(text[cut:s + j])
                new_dirs.append(direction)
                cut = s + j
        new_boxes.append(_bounds(chars[cut - s:]))
        new_texts.append(text[cut:e])
        new_dirs.append(direction)
    return np.array(new_boxes), new_texts, np.array(new_dirs, dtype=np.int64)


def _bounds(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])
