"""Page orientation (0/90/180/270) from a detector and a line recogniser, for engines without a page classifier.

Line shapes on a downscaled copy decide between "lines run across" (0/180) and "lines run down" (90/270); the
recogniser then reads a few of the longest lines at both candidate rotations and the rotation whose reading is
more confident wins. Recognisers produce few, low-confidence characters on upside-down or sideways text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from maoocr.ocr.geometry import ORIENTATIONS, bounding_box, rotate_clockwise
from maoocr.ocr.types import Point

# detect(image) -> polygons of text regions in that image's pixels
Detector = Callable[[Image.Image], Sequence[Sequence[Point]]]
# read(crops) -> (text, confidence) per crop, for crops that are already upright
Reader = Callable[[list[Image.Image]], list[tuple[str, float]]]

_ELONGATED = 1.5  # width/height ratio from which a box counts as a horizontal (or vertical) line
_DOMINANT = 3.0  # one direction must outweigh the other this much to skip testing all four rotations
_CLEAR_LEAD = 2.0  # score ratio between the best and second-best rotation that ends the reading early


@dataclass
class OrientationResult:
    degrees: int  # clockwise rotation that makes the page upright
    scores: dict[int, float] = field(default_factory=dict)


def detect_orientation(image: Image.Image, detect: Detector, read: Reader, *, probe_side: int = 1024,
                       max_lines: int = 6, max_aspect: float = 14.0) -> OrientationResult:
    """The clockwise rotation (degrees) that makes `image` upright; 0 when it holds no readable text."""
    scale = min(1.0, probe_side / max(image.size))
    probe = image if scale >= 1.0 else image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
    boxes = [bounding_box(poly) for poly in detect(probe)]
    across = [b for b in boxes if (b[2] - b[0]) >= _ELONGATED * (b[3] - b[1])]
    down = [b for b in boxes if (b[3] - b[1]) >= _ELONGATED * (b[2] - b[0])]
    area_across = sum(_area(b) for b in across)
    area_down = sum(_area(b) for b in down)
    candidates: tuple[int, ...]
    if area_across == 0 and area_down == 0:
        candidates, chosen = ORIENTATIONS, sorted(boxes, key=_area, reverse=True)
    elif area_across >= _DOMINANT * area_down:
        candidates, chosen = (0, 180), across
    elif area_down >= _DOMINANT * area_across:
        candidates, chosen = (90, 270), down
    else:
        candidates, chosen = ORIENTATIONS, across + down
    chosen = sorted(chosen, key=_area, reverse=True)[:max_lines]
    if not chosen:
        return OrientationResult(0, {})
    crops = [_crop(image, b, scale, max_aspect) for b in chosen]
    scores = dict.fromkeys(candidates, 0.0)
    done = 0
    # Two lines usually settle it; more are read only while the leading rotation is not clearly ahead.
    for upto in (min(2, len(crops)), len(crops)):
        for degrees in candidates:
            readings = read([rotate_clockwise(c, degrees) for c in crops[done:upto]])
            # Confidence-weighted character count: readings of rotated text are short and unsure.
            scores[degrees] += sum(conf * len(text.strip()) for text, conf in readings)
        done = upto
        ranked = sorted(scores.values(), reverse=True)
        if ranked[0] > 0 and (len(ranked) == 1 or ranked[0] >= _CLEAR_LEAD * ranked[1]):
            break
    best = max(candidates, key=lambda d: (scores[d], d == 0))
    return OrientationResult(best if scores[best] > 0 else 0, scores)


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _crop(image: Image.Image, box: tuple[float, float, float, float], scale: float, max_aspect: float) -> Image.Image:
    """The box (probe pixels) cut from the full-resolution image, trimmed to its centre when very long."""
    x0, y0, x1, y1 = (v / scale for v in box)
    pad = 0.1 * min(x1 - x0, y1 - y0)
    x0, y0 = max(0.0, x0 - pad), max(0.0, y0 - pad)
    x1, y1 = min(float(image.width), x1 + pad), min(float(image.height), y1 + pad)
    width, height = x1 - x0, y1 - y0
    # Recognition cost grows with line length; the centre of a long line reads as well as the whole of it.
    if width > max_aspect * height:
        cx = (x0 + x1) / 2.0
        x0, x1 = cx - max_aspect * height / 2.0, cx + max_aspect * height / 2.0
    elif height > max_aspect * width:
        cy = (y0 + y1) / 2.0
        y0, y1 = cy - max_aspect * width / 2.0, cy + max_aspect * width / 2.0
    return image.crop((round(x0), round(y0), max(round(x0) + 1, round(x1)), max(round(y0) + 1, round(y1))))
