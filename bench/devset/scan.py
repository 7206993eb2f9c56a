"""Turns a generated PDF into what a scanner would give: a 300 dpi bilevel TIFF (Group 4) with photos halftoned,
and a 200 dpi grayscale JPEG with skew, blur, noise and uneven light. Deterministic for a given seed."""

from __future__ import annotations

import io

import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageFilter

Rect = tuple[float, float, float, float]


def render(pdf: bytes, dpi: int) -> Image.Image:
    """The first page as an 8-bit grayscale image."""
    doc = pdfium.PdfDocument(pdf)
    try:
        return doc[0].render(scale=dpi / 72).to_pil().convert("L")
    finally:
        doc.close()


def png(pdf: bytes, dpi: int = 300) -> bytes:
    """A clean rendering, for engines that only read images."""
    buf = io.BytesIO()
    render(pdf, dpi).save(buf, "PNG", dpi=(dpi, dpi))
    return buf.getvalue()


def bilevel_300(pdf: bytes, seed: int, photos: list[Rect]) -> bytes:
    """Skew 0.3-0.8 degrees, ink spread, speckle and drop-outs, text thresholded and photos dithered, 1-bit G4."""
    rng = np.random.default_rng(seed)
    dpi = 300
    page = render(pdf, dpi)
    mask = Image.new("L", page.size, 0)
    scale = dpi / 72
    for x0, y0, x1, y1 in photos:
        mask.paste(255, (int(x0 * scale), int(y0 * scale), int(x1 * scale), int(y1 * scale)))
    angle = float(rng.uniform(0.3, 0.8) * rng.choice([-1, 1]))
    page = page.rotate(angle, Image.BICUBIC, fillcolor=255)
    mask = mask.rotate(angle, Image.NEAREST, fillcolor=0)
    page = page.filter(ImageFilter.GaussianBlur(0.7))
    gray = np.asarray(page, dtype=np.float32)
    gray += rng.normal(0, 10, gray.shape)
    threshold = rng.uniform(150, 175)
    ink = gray < threshold
    dithered = np.asarray(Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).convert("1")) == 0
    ink = np.where(np.asarray(mask) > 0, dithered, ink)
    # speckle: isolated dark dots (dust) and small white drop-outs inside strokes
    h, w = ink.shape
    for _ in range(int(h * w * 0.00015)):
        y, x = int(rng.integers(0, h - 3)), int(rng.integers(0, w - 3))
        size = int(rng.integers(1, 4))
        ink[y:y + size, x:x + size] = True
    drop = rng.random(ink.shape) < 0.004
    ink &= ~drop
    image = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).convert("1", dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, "TIFF", compression="group4", dpi=(dpi, dpi))
    return buf.getvalue()


def gray_200(pdf: bytes, seed: int) -> bytes:
    """Skew 1-2 degrees, uneven illumination, slight blur, Gaussian noise, JPEG at 200 dpi."""
    rng = np.random.default_rng(seed)
    dpi = 200
    page = render(pdf, dpi)
    angle = float(rng.uniform(1.0, 2.0) * rng.choice([-1, 1]))
    page = page.rotate(angle, Image.BICUBIC, fillcolor=255).filter(ImageFilter.GaussianBlur(0.8))
    gray = np.asarray(page, dtype=np.float32)
    h, w = gray.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    light = 1.0 - 0.22 * (((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2) - rng.uniform(0.0, 0.12) * xx / w
    paper = 40 + gray * (215 / 255)  # toner is never black, paper never white
    gray = paper * light + rng.normal(0, 7, gray.shape)
    image = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=82, dpi=(dpi, dpi))
    return buf.getvalue()
