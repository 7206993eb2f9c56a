"""Right-angle page rotations and mapping points from the upright page back to the input image."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from maoocr.ocr.types import Point

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
