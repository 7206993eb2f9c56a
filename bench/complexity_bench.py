"""Benchmark of `analyze_page` on synthetic A4 pages at 150 dpi; also the page generator the complexity tests use.

Run: `python -m bench.complexity_bench` - prints one JSON line per metric.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maoocr.pipeline.complexity import analyze_page

A4_150DPI = (1240, 1754)
MARGIN = 110
FONT_PX = 22  # ~10.5 pt at 150 dpi
_FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")
# Common English words, so ascender/descender frequencies look like real Latin text.
_WORDS = ("the of and to in is that it was for on are as with his they at be this from have or by one had not "
          "but what all were when we there can an your which their said if do will each about how up out them "
          "then she many some so these would other into has more her two like him see time could no make than "
          "first been its who now people my made over did down only way find use may water long little very "
          "after words called just where most know get through back much before go good new write our used me "
          "man too any day same right look think also around another came come work three word must because "
          "does part even place well such here take why things help put years different away again off went old "
          "number great tell men say small every found still between name should home big give air line set own "
          "under read last never us left end along while might next sound below saw something thought both few "
          "those always looked show large often together asked house world going want school important until "
          "form food keep children feet land side without boy once animals life enough took sometimes four head "
          "above kind began almost live page got earth need far hand high year mother light parts country father "
          "let night following picture being study second eyes soon times story boys since white days ever paper "
          "hard near sentence better best across during today others however sure means knew its try told young "
          "miles sun ways thing whole hear example heard several change answer room sea against top turned learn "
          "point city play toward five using himself usually").split()
KINDS = ("plain", "two_column", "three_column", "table", "rotated90", "rotated180", "rotated270", "skewed5",
         "noisy", "color", "blank", "small_text")


def font(size: int = FONT_PX) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in _FONT_PATHS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice((".", ".", ".", ",", ";"))


def draw_paragraphs(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rng: random.Random,
                    size: int = FONT_PX, fill: object = 0) -> int:
    """Fill `box` (x0, y0, x1, y1) with wrapped paragraphs; returns the y below the last line."""
    fnt = font(size)
    x0, y0, x1, y1 = box
    pitch = int(size * 1.4)
    y = y0
    while y + pitch <= y1:
        words = " ".join(_sentence(rng) for _ in range(rng.randint(2, 5))).split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if draw.textlength(trial, font=fnt) > x1 - x0 and line:
                draw.text((x0, y), line, font=fnt, fill=fill)
                y += pitch
                line = word
                if y + pitch > y1:
                    return y
            else:
                line = trial
        draw.text((x0, y), line, font=fnt, fill=fill)
        y += pitch + size // 2  # paragraph gap
    return y


def _title(draw: ImageDraw.ImageDraw, text: str, y: int, fill: object = 0) -> int:
    draw.text((MARGIN, y), text, font=font(40), fill=fill)
    return y + 70


def _columns_page(n: int, rng: random.Random) -> Image.Image:
    img = Image.new("L", A4_150DPI, 255)
    draw = ImageDraw.Draw(img)
    y = _title(draw, "Annual Report on Rivers", MARGIN)
    gutter = 60
    width = (A4_150DPI[0] - 2 * MARGIN - (n - 1) * gutter) // n
    for i in range(n):
        x0 = MARGIN + i * (width + gutter)
        draw_paragraphs(draw, (x0, y, x0 + width, A4_150DPI[1] - MARGIN), rng)
    return img


def _table_page(rng: random.Random) -> Image.Image:
    img = Image.new("L", A4_150DPI, 255)
    draw = ImageDraw.Draw(img)
    y = _title(draw, "Quarterly Figures", MARGIN)
    y = draw_paragraphs(draw, (MARGIN, y, A4_150DPI[0] - MARGIN, y + 300), rng)
    rows, cols, row_h = 12, 4, 48
    x0, x1 = MARGIN, A4_150DPI[0] - MARGIN
    col_w = (x1 - x0) // cols
    fnt = font()
    for r in range(rows + 1):
        draw.line([(x0, y + r * row_h), (x0 + cols * col_w, y + r * row_h)], fill=0, width=2)
    for c in range(cols + 1):
        draw.line([(x0 + c * col_w, y), (x0 + c * col_w, y + rows * row_h)], fill=0, width=2)
    for r in range(rows):
        for c in range(cols):
            text = rng.choice(_WORDS).capitalize() if c == 0 else f"{rng.randint(10, 99999):,}"
            draw.text((x0 + c * col_w + 12, y + r * row_h + 12), text, font=fnt, fill=0)
    draw_paragraphs(draw, (MARGIN, y + rows * row_h + 40, x1, A4_150DPI[1] - MARGIN), rng)
    return img


def _plain_page(rng: random.Random, size: int = FONT_PX) -> Image.Image:
    img = Image.new("L", A4_150DPI, 255)
    draw = ImageDraw.Draw(img)
    y = _title(draw, "Notes on Optical Reading", MARGIN)
    draw_paragraphs(draw, (MARGIN, y, A4_150DPI[0] - MARGIN, A4_150DPI[1] - MARGIN), rng, size=size)
    return img


def _noisy_page(rng: random.Random, seed: int) -> Image.Image:
    img = Image.new("L", A4_150DPI, 175)
    draw = ImageDraw.Draw(img)
    y = _title(draw, "Faded Carbon Copy", MARGIN, fill=115)
    draw_paragraphs(draw, (MARGIN, y, A4_150DPI[0] - MARGIN, A4_150DPI[1] - MARGIN), rng, fill=115)
    noise = np.random.default_rng(seed).normal(0.0, 22.0, size=(A4_150DPI[1], A4_150DPI[0]))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def _color_page(rng: random.Random) -> Image.Image:
    img = Image.new("RGB", A4_150DPI, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, A4_150DPI[0], 90], fill=(30, 80, 190))
    y = _title(draw, "Product Brochure", 130, fill=(200, 30, 30))
    draw.rectangle([MARGIN, y, MARGIN + 400, y + 260], fill=(250, 200, 40))
    draw_paragraphs(draw, (MARGIN + 430, y, A4_150DPI[0] - MARGIN, y + 260), rng, fill=(0, 0, 0))
    draw_paragraphs(draw, (MARGIN, y + 300, A4_150DPI[0] - MARGIN, A4_150DPI[1] - MARGIN), rng, fill=(20, 20, 20))
    return img


def make_page(kind: str, seed: int = 0) -> Image.Image:
    """A synthetic 150 dpi A4 page of one of `KINDS` (deterministic for a given seed)."""
    rng = random.Random(f"{kind}-{seed}")
    white = 255
    if kind == "plain":
        return _plain_page(rng)
    if kind == "small_text":
        return _plain_page(rng, size=13)
    if kind == "two_column":
        return _columns_page(2, rng)
    if kind == "three_column":
        return _columns_page(3, rng)
    if kind == "table":
        return _table_page(rng)
    if kind.startswith("rotated"):
        return _plain_page(rng).rotate(int(kind[len("rotated"):]), expand=True, fillcolor=white)
    if kind == "skewed5":
        return _plain_page(rng).rotate(5, resample=Image.Resampling.BICUBIC, fillcolor=white)
    if kind == "noisy":
        return _noisy_page(rng, seed)
    if kind == "color":
        return _color_page(rng)
    if kind == "blank":
        return Image.new("L", A4_150DPI, white)
    raise ValueError(f"unknown page kind {kind!r}; expected one of {KINDS}")


def _summary(metric: str, times: list[float]) -> dict:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"metric": metric, "value": round(statistics.fmean(times), 2), "p50": round(statistics.median(times), 2),
            "p99": round(p99, 2), "pages": len(times)}


def run(pages: int = 20) -> list[dict]:
    """Time `analyze_page` over `pages` mixed synthetic pages after one warm-up: wall-clock ms per page, and
    process CPU ms per page (all threads), which is what a loaded machine cannot inflate."""
    images = [make_page(KINDS[i % len(KINDS)], seed=i) for i in range(pages)]
    analyze_page(images[0])
    wall, cpu = [], []
    for img in images:
        w0, c0 = time.perf_counter(), time.process_time()
        analyze_page(img)
        wall.append((time.perf_counter() - w0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return [_summary("complexity_ms_per_page", wall), _summary("complexity_cpu_ms_per_page", cpu)]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
