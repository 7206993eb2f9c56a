"""Page complexity analysis: fast, deterministic image features of one page (layout, skew, orientation, tables,
noise, colour) and a score in [0, 1] for how hard the page is to OCR."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from maoocr.errors import InvalidRequest, UnprocessableDocument
from maoocr.pipeline.complexity_models import ComplexityAnalysis, Level, PageFeatures
from maoocr.pipeline.page_measures import (
    Ink, binarize_page, colour_stats, count_columns, deskew_matrix, estimate_noise_sigma, gray_histogram,
    hist_quantile, ink_extent, line_runs, page_array, paper_dpi_guess, reduce_by, skew_and_axis, strip_profiles)

__all__ = ["ComplexityAnalysis", "PageFeatures", "analyze_page"]

WORK_LONG_SIDE = 1024
SIMPLE_BELOW = 0.30
COMPLEX_FROM = 0.60
MIN_SIDE_PX = 32


def analyze_page(image: Image.Image, dpi: float | None = None) -> ComplexityAnalysis:
    """Compute `PageFeatures` and a complexity score for one page image (any PIL mode; `dpi` if known).

    Works on a copy reduced by an integer factor to a long side <= WORK_LONG_SIDE px (~75 dpi for A4), plus two
    full-resolution samples: four 256 px crops for noise, and a ~150 dpi crop of the middle of the text for the
    cues that need detail (ascenders/descenders, line height, ink contrast).

    - dpi: as given; else from the paper size when the aspect ratio is A4/Letter/Legal, unless the text line
      pitch (read as ~14 pt) disagrees by > 2x (then the image is not a whole page); else from the line pitch.
    - ink: median blur + Otsu, never closer than 3 sigma to the paper level (a blank noisy page has no ink);
      light-on-dark pages are inverted first.
    - skew, line axis: projection profiles over +-15 deg, one profile per slice along the lines (columns rarely
      share baselines): 1 deg steps at 1/4 scale for horizontal and for vertical lines, the axis whose best
      angle stands out more wins; then 0.5 deg steps at 1/2 scale, one slice per text column, and a parabolic
      peak fit (error <= ~0.2 deg on synthetic pages).
    - 0 vs 180 (90 vs 270): in Latin text more glyphs rise above the x-height band (ascenders, capitals,
      i-dots) than hang below it (descenders), counted on lines that have both. Reliable for clean Latin prose;
      CJK, digits, tables of numbers and heavy noise leave too few such lines or too small a difference. Then
      the base orientation (0 or 90) is reported with orientation_confidence <= 0.5: read that as "upright or
      upside down, unknown".
    - columns: whitespace gutters >= 0.12 in wide that stay open through >= 1.5 in of half-inch bands (titles,
      pictures and unequal columns do not hide them), table area excluded; the most blocks any band holds.
    - tables: >= 2 horizontal and >= 2 vertical ruled lines (5 in all) that overlap, by morphological opening of
      the deskewed page. Borderless, dashed-rule and horizontal-rules-only tables are not detected.
    - contrast: paper level minus ink level; noise: robust sigma of x - median3x3(x); colour: saturated share.

    Score: noisy-OR of per-cue contributions (`_contributions`), so it stays in [0, 1] and one strong cue (a
    table, >= 3 columns, SNR <= 5) alone makes a page complex. Levels: score < SIMPLE_BELOW (0.30) simple,
    < COMPLEX_FROM (0.60) medium, else complex. Weights are hand-set on synthetic pages, not fitted to OCR errors.
    """
    start = time.perf_counter()
    if not isinstance(image, Image.Image):
        raise InvalidRequest(f"analyze_page expects a PIL image, got {type(image).__name__}")
    if dpi is not None and not (math.isfinite(dpi) and 0 < dpi <= 10000):
        raise InvalidRequest(f"dpi must be in (0, 10000], got {dpi}")
    width, height = image.size
    if min(width, height) < MIN_SIDE_PX:
        raise UnprocessableDocument(f"page is {width}x{height} px; both sides must be >= {MIN_SIDE_PX} px")

    full = page_array(image)
    k = max(1, math.ceil(max(width, height) / WORK_LONG_SIDE))
    work = reduce_by(full, k)
    ink = binarize_page(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY) if work.ndim == 3 else work)
    mean_sat, color_ratio = colour_stats(work)
    noise = estimate_noise_sigma(full)
    dpi_value, dpi_source = (float(dpi), "given") if dpi is not None else paper_dpi_guess(width, height)
    f: dict = dict(width_px=width, height_px=height, inverted=ink.inverted, is_blank=ink.is_blank,
                   ink_ratio=ink.ink_ratio, background_level=ink.background, ink_level=ink.ink, noise_sigma=noise,
                   mean_saturation=mean_sat, color_ratio=color_ratio, is_color=color_ratio >= 0.005)
    if ink.is_blank:
        f.update(dpi=dpi_value or round(max(width, height) / 11.69, 1), dpi_source=dpi_source or "assumed_a4",
                 text_area_ratio=0.0, text_lines_per_column=0, line_height_px=0.0, skew_deg=0.0, orientation=0,
                 orientation_confidence=0.0, columns=0, has_table=False, horizontal_rules=0, vertical_rules=0,
                 table_area_ratio=0.0)
    else:
        f.update(_geometry(full, ink, k, dpi_value, dpi_source))
    contrast_gray = 0.0 if ink.is_blank else max(0.0, f["background_level"] - f["ink_level"])
    f.update(contrast=round(contrast_gray / 255.0, 4), snr=round(min(100.0, contrast_gray / max(noise, 0.5)), 2))
    features = PageFeatures(**f)
    parts = _contributions(features)
    score = round(min(1.0, max(0.0, 1.0 - math.prod(1.0 - c for c in parts.values()))), 4)
    level: Level = "simple" if score < SIMPLE_BELOW else ("medium" if score < COMPLEX_FROM else "complex")
    return ComplexityAnalysis(score=score, level=level, features=features, contributions=parts,
                              analysis_ms=round((time.perf_counter() - start) * 1000.0, 3))


def _geometry(full: np.ndarray, ink: Ink, k: int, dpi: float | None, dpi_source: str | None) -> dict:
    """Skew, orientation, lines, dpi, tables and columns of a page that has ink."""
    quarter, half = reduce_by(ink.mask, 4), reduce_by(ink.mask, 2)
    skew, vertical, axis_conf = skew_and_axis(quarter, half)
    h, w = ink.mask.shape
    straight = cv2.warpAffine(ink.mask, deskew_matrix(skew, (h, w)), (w, h), flags=cv2.INTER_NEAREST)
    if vertical:  # from here on text lines run along axis 1
        straight = np.ascontiguousarray(straight.T)
    along = cv2.reduce(straight, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    runs = line_runs(strip_profiles(straight, *ink_extent(along, 0.005), 6), rel_thresh=0.06, min_len=2)
    lines_per_column, pitch = 0, 0.0
    if runs.starts.size:
        counts = np.bincount(runs.strips)
        lines_per_column = int(np.median(counts[counts > 0]))
        gaps = np.diff(runs.starts)[np.diff(runs.strips) == 0]
        pitch = float(np.median(gaps)) * k if gaps.size else 0.0
    pitch_dpi = pitch / (14.0 / 72.0)  # body text is set at roughly 11-18 pt line pitch
    # A paper-size guess that disagrees with the text by > 2x means the image is not a whole page.
    if pitch > 0 and (dpi is None or (dpi_source == "paper_size" and not 0.5 < dpi / pitch_dpi < 2.0)):
        dpi, dpi_source = round(pitch_dpi, 1), "line_pitch"
    if dpi is None:
        dpi, dpi_source = round(max(full.shape[:2]) / 11.69, 1), "assumed_a4"

    cues = _crop_cues(full, ink, k, skew, vertical, quarter, dpi)
    # Upright Latin prose scores ~0.15-0.4 on synthetic pages; CJK and digits rarely have lines with both zones.
    flip_conf = min(1.0, abs(cues.asymmetry) / 0.2) * min(1.0, cues.lines_used / 8.0)
    flipped = cues.asymmetry < 0 and flip_conf >= 0.5
    h_rules, v_rules, box = _table_rules(ink.rules, skew, dpi / k)
    table_area = 0.0
    text_only = straight
    if box is not None:  # table cells are not text columns
        x0, y0, x1, y1 = box if not vertical else (box[1], box[0], box[3], box[2])
        text_only = straight.copy()
        text_only[y0:y1, x0:x1] = 0
        table_area = (x1 - x0) * (y1 - y0) / float(straight.size)
    return dict(dpi=dpi, dpi_source=dpi_source, skew_deg=round(skew, 2),
                text_area_ratio=round(float(np.count_nonzero(quarter >= 13)) / quarter.size, 4),
                text_lines_per_column=lines_per_column, line_height_px=round(cues.line_height, 2),
                ink_level=round(cues.ink, 2), background_level=round(cues.background, 2),
                orientation=(90 if vertical else 0) + (180 if flipped else 0),
                orientation_confidence=round(axis_conf * (0.5 + 0.5 * flip_conf if flip_conf >= 0.5 else 0.5), 3),
                columns=count_columns(text_only, dpi / k), has_table=box is not None, horizontal_rules=h_rules,
                vertical_rules=v_rules, table_area_ratio=round(table_area, 4))


def _contributions(f: PageFeatures) -> dict[str, float]:
    """Each cue's share of the score (0..1), combined as 1 - prod(1 - c). Hand-set weights."""
    if f.is_blank:
        return {}
    parts = {
        "table": 0.65 if f.has_table else 0.0,
        "columns": 0.0 if f.columns <= 1 else (0.35 if f.columns == 2 else 0.65),
        "noise": 0.7 * _ramp(f.snr, 15.0, 5.0),  # OCR degrades quickly below an SNR of ~10
        "low_contrast": 0.3 * _ramp(f.contrast, 0.35, 0.15),
        "skew": 0.15 * _ramp(abs(f.skew_deg), 2.0, 10.0),
        "rotated": 0.1 if f.orientation != 0 and f.orientation_confidence > 0.5 else 0.0,
        "color": 0.1 if f.is_color else 0.0,
        # Mostly-dark pages are photos, figures or shaded forms rather than running text.
        "graphics": 0.4 * _ramp(f.ink_ratio, 0.2, 0.4),
        # Line height in points is circular when the dpi itself came from the line pitch.
        "small_text": 0.0 if f.dpi_source == "line_pitch" or f.line_height_px <= 0 else
        0.2 * _ramp(f.line_height_px / f.dpi * 72.0, 8.0, 5.0),
    }
    return {name: round(c, 4) for name, c in parts.items() if c > 0}


def _ramp(value: float, zero_at: float, one_at: float) -> float:
    """0 at `zero_at`, 1 at `one_at`, linear between (either direction)."""
    return min(1.0, max(0.0, (value - zero_at) / (one_at - zero_at)))


class _CropCues(NamedTuple):
    asymmetry: float  # (ascender-zone glyphs - descender-zone glyphs) / both, over lines having both; > 0: upright
    lines_used: int
    line_height: float  # full px
    ink: float
    background: float


def _crop_cues(full: np.ndarray, ink: Ink, k: int, skew: float, vertical: bool, quarter: np.ndarray,
               dpi: float) -> _CropCues:
    """Cues that need ~150 dpi, from a crop of the middle of the text: the ascender / descender asymmetry of
    its lines (their zones are 1-2 px tall at work scale), line height and ink contrast."""
    rows = cv2.reduce(quarter, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    cols = cv2.reduce(quarter, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    (r0, r1), (c0, c1), f = ink_extent(rows, 0.02), ink_extent(cols, 0.02), 4 * k  # f: quarter px -> full px
    half_h, half_w = max(0.3 * (r1 - r0) * f, 128.0), max(0.3 * (c1 - c0) * f, 128.0)
    cy, cx = (r0 + r1) / 2 * f, (c0 + c1) / 2 * f
    fh, fw = full.shape[:2]
    kc = max(1, round(max(fh, fw) / 1800))
    window = full[max(0, int(cy - half_h)):min(fh, int(cy + half_h)),
                  max(0, int(cx - half_w)):min(fw, int(cx + half_w))]
    crop = reduce_by(np.ascontiguousarray(window), kc)
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    crop = cv2.medianBlur(255 - crop if ink.inverted else crop, 3)
    hist = gray_histogram(crop)
    ink_level, background = ink.ink, ink.background
    levels = _two_levels(window, ink.inverted)
    if levels is not None:  # a bilevel scan: its levels are exact, reducing it would only blur them together
        ink_level, background = levels
    elif hist[: ink.thresh + 1].sum() >= 50:  # else the crop missed the text: keep the work-scale levels
        ink_level = hist_quantile(hist[: ink.thresh + 1], 0.1)
        background = ink.thresh + 1 + hist_quantile(hist[ink.thresh + 1:], 0.5)
    _, mask = cv2.threshold(crop, ink.thresh, 255, cv2.THRESH_BINARY_INV)
    mask = cv2.warpAffine(mask, deskew_matrix(skew, mask.shape), mask.shape[::-1], flags=cv2.INTER_NEAREST)
    if vertical:
        mask = np.ascontiguousarray(mask.T)
    # Table rules and underlines (dilated 1 px, for their anti-aliased fringes) would add ink to whole rows
    # or columns and swamp the thin zones.
    rule_len = max(20, int(0.4 * dpi / kc))
    ruled = cv2.bitwise_or(*(cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, s))
                             for s in ((rule_len, 1), (1, rule_len))))
    mask = cv2.subtract(mask, cv2.dilate(ruled, np.ones((3, 3), np.uint8)))
    runs = line_runs(strip_profiles(mask, 0, mask.shape[1] - 1, 4), rel_thresh=0.01, min_len=4)
    if runs.starts.size == 0:
        return _CropCues(0.0, 0, 0.0, ink_level, background)
    heights = runs.ends - runs.starts
    med = float(np.median(heights))
    # Glyphs crossing a row a little above / below the x-height band: ascenders, capitals and i-dots above,
    # descenders below. Counting glyphs (0->1 steps along the row), not ink, keeps wide descender tails from
    # outweighing thin stems. Only lines with both zones vote: a line with one zone is either prose without
    # descenders or, upside down, digits with commas.
    steps = strip_profiles(cv2.compare(mask[:, 1:], mask[:, :-1], cv2.CMP_GT), 0, mask.shape[1] - 2, 4) / 255.0
    steps = np.concatenate([steps, np.zeros((steps.shape[0], 1))], axis=1).ravel()
    offset = np.maximum(2, np.round(0.2 * (runs.last - runs.first + 1))).astype(np.int64)
    up, down = runs.first - offset, runs.last + offset
    above = np.where(up >= runs.starts, steps[np.clip(up, 0, steps.size - 1)], 0.0)
    below = np.where(down < runs.ends, steps[np.clip(down, 0, steps.size - 1)], 0.0)
    both = (above > 0) & (below > 0) & (heights <= 2.5 * med)  # taller runs are figures or merged lines
    a, b = float(above[both].sum()), float(below[both].sum())
    return _CropCues((a - b) / (a + b) if both.any() else 0.0, int(both.sum()), med * kc, ink_level, background)


def _two_levels(window: np.ndarray, inverted: bool) -> tuple[float, float] | None:
    """(ink, paper) gray levels when a full-resolution sample of the page holds just two (1-bit scans)."""
    sample = np.ascontiguousarray(window[::3, ::3])
    if sample.ndim == 3:
        sample = cv2.cvtColor(sample, cv2.COLOR_RGB2GRAY)
    if sample.size == 0:
        return None
    hist = gray_histogram(255 - sample if inverted else sample)
    top = np.argsort(hist)[-2:]
    if hist[top].sum() < 0.995 * hist.sum() or abs(int(top[0]) - int(top[1])) < 64 or hist[top].min() == 0:
        return None
    return float(top.min()), float(top.max())


def _table_rules(rules: np.ndarray, skew: float, work_dpi: float) -> tuple[int, int, tuple[int, int, int, int] | None]:
    """(horizontal rules, vertical rules, table box in deskewed work px or None)."""
    h, w = rules.shape
    straight = cv2.warpAffine(rules, deskew_matrix(skew, (h, w)), (w, h), flags=cv2.INTER_NEAREST)
    h_len, v_len = max(20, int(0.8 * work_dpi)), max(12, int(0.5 * work_dpi))
    max_thick = max(3, int(0.06 * work_dpi))  # thicker bars are shading or solid blocks, not rules
    found = []
    for size, along_i, across_i in (((h_len, 1), 2, 3), ((1, v_len), 3, 2)):
        opened = cv2.morphologyEx(straight, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, size))
        contours, _ = cv2.findContours(opened, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64).reshape(-1, 4)
        found.append(boxes[(boxes[:, along_i] >= max(size)) & (boxes[:, across_i] <= max_thick)])
    hb, vb = found
    if len(hb) < 2 or len(vb) < 2 or len(hb) + len(vb) < 5:
        return len(hb), len(vb), None
    (hx0, hy0), (hx1, hy1) = hb[:, :2].min(axis=0), (hb[:, :2] + hb[:, 2:]).max(axis=0)
    (vx0, vy0), (vx1, vy1) = vb[:, :2].min(axis=0), (vb[:, :2] + vb[:, 2:]).max(axis=0)
    if min(hx1, vx1) < max(hx0, vx0) or min(hy1, vy1) < max(hy0, vy0):
        return len(hb), len(vb), None  # rules in separate places, e.g. a header line and a margin bar
    return len(hb), len(vb), (int(min(hx0, vx0)), int(min(hy0, vy0)), int(max(hx1, vx1)), int(max(hy1, vy1)))
