"""Right-angle page rotations, mapping points from the upright page back to the input image, and box arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from maoocr.ocr.types import Box, Point

ORIENTATIONS = (0, 90, 180, 270)
# Clockwise degrees -> the lossless transpose that applies them (PIL's ROTATE_* constants are counter-clockwise).
_TRANSPOSE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def rotate_clockwise(image: Image.Image, degrees: int) -> Image.Image:
    """`image` turned clockwise by a multiple of 90 degrees, without resampling."""
    degrees %= 360
    if degrees not in ORIENTATIONS:
        raise ValueError(f"only right-angle rotations are supported, got {degrees}")
    return image if degrees == 0 else image.transpose(_TRANSPOSE[degrees])


def upright_to_input(points: Sequence[Point], degrees: int, input_size: tuple[int, int]) -> list[Point]:
    """Map points on `rotate_clockwise(input, degrees)` back to the input image of size `input_size` (w, h)."""
    width, height = input_size
    degrees %= 360
    if degrees == 0:
        return [(float(x), float(y)) for x, y in points]
    if degrees == 90:
        return [(float(y), float(height - x)) for x, y in points]
    if degrees == 180:
        return [(float(width - x), float(height - y)) for x, y in points]
    if degrees == 270:
        return [(float(width - y), float(x)) for x, y in points]
    raise ValueError(f"only right-angle rotations are supported, got {degrees}")


def bounding_box(points: Sequence[Point]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def share(box: Box, region: Box) -> float:
    """How much of `box` lies inside `region` (0..1)."""
    return intersection(box, region) / (area(box) or 1.0)


def x_overlap(a: Box, b: Box) -> bool:
    """The boxes share a column: they overlap across a quarter of the narrower one's width."""
    overlap = min(a[2], b[2]) - max(a[0], b[0])
    return overlap > 0.25 * min(a[2] - a[0], b[2] - b[0])


def centre_y(box: Box) -> float:
    return (box[1] + box[3]) / 2.0


def union(boxes: Sequence[Box], members: Sequence[int]) -> Box:
    """The box around `boxes[i]` for i in `members`."""
    return (min(boxes[i][0] for i in members), min(boxes[i][1] for i in members),
            max(boxes[i][2] for i in members), max(boxes[i][3] for i in members))
