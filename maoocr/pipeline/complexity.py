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

__all__ = ["ComplexityAnalysis", "PageFeatures", "analyze_page"]

WORK_LONG_SIDE = 1024
SIMPLE_BELOW = 0.30
COMPLEX_FROM = 0.60
MAX_SKEW_DEG = 15.0
MIN_SIDE_PX = 32
# Aspect ratio -> long side in inches. A-series pages share one ratio; A4 is by far the most common.
_PAPER_SIZES = ((math.sqrt(2.0), 11.69), (11.0 / 8.5, 11.0), (14.0 / 8.5, 14.0))
_BLUR_OFFSET = 0.21


class _Ink(NamedTuple):
    mask: np.ndarray  # uint8 0/255 at work scale
    rules: np.ndarray  # uint8 0/255 from a lenient threshold of the unblurred page, for ruled lines
    thresh: int  # gray level (after inversion, median-blurred) at or below which a pixel is ink
    ink_ratio: float
    background: float
    ink: float
    inverted: bool
    is_blank: bool


class _Runs(NamedTuple):
    """Text-line runs in per-strip profiles, as indices into the strips' profiles laid end to end."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive
    first: np.ndarray  # first row of each run's x-height band (rows >= half the run's peak)
    last: np.ndarray  # its last row
    strips: np.ndarray


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
    - columns: whitespace gutters >= 0.12 in wide in the ink profile along the lines, table area excluded.
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

    full = _to_array(image)
    k = max(1, math.ceil(max(width, height) / WORK_LONG_SIDE))
    work = _reduce(full, k)
    ink = _binarize(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY) if work.ndim == 3 else work)
    mean_sat, color_ratio = _colour(work)
    noise = _noise_sigma(full)
    dpi_value, dpi_source = (float(dpi), "given") if dpi is not None else _paper_dpi(width, height)
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


def _geometry(full: np.ndarray, ink: _Ink, k: int, dpi: float | None, dpi_source: str | None) -> dict:
    """Skew, orientation, lines, dpi, tables and columns of a page that has ink."""
    quarter, half = _reduce(ink.mask, 4), _reduce(ink.mask, 2)
    skew, vertical, axis_conf = _skew_and_axis(quarter, half)
    h, w = ink.mask.shape
    straight = cv2.warpAffine(ink.mask, _deskew_matrix(skew, (h, w)), (w, h), flags=cv2.INTER_NEAREST)
    if vertical:  # from here on text lines run along axis 1
        straight = np.ascontiguousarray(straight.T)
    along = cv2.reduce(straight, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    runs = _runs(_strip_profiles(straight, *_extent(along, 0.005), 6), rel_thresh=0.06, min_len=2)
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
    if box is not None:
        x0, y0, x1, y1 = box if not vertical else (box[1], box[0], box[3], box[2])
        along = along.copy()
        along[x0:x1] -= cv2.reduce(straight[y0:y1, x0:x1], 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
        table_area = (x1 - x0) * (y1 - y0) / float(straight.size)
    return dict(dpi=dpi, dpi_source=dpi_source, skew_deg=round(skew, 2),
                text_area_ratio=round(float(np.count_nonzero(quarter >= 13)) / quarter.size, 4),
                text_lines_per_column=lines_per_column, line_height_px=round(cues.line_height, 2),
                ink_level=round(cues.ink, 2), background_level=round(cues.background, 2),
                orientation=(90 if vertical else 0) + (180 if flipped else 0),
                orientation_confidence=round(axis_conf * (0.5 + 0.5 * flip_conf if flip_conf >= 0.5 else 0.5), 3),
                columns=_columns(along, dpi / k), has_table=box is not None, horizontal_rules=h_rules,
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


def _to_array(image: Image.Image) -> np.ndarray:
    """uint8 H x W (gray) or H x W x 3 (RGB); transparent areas count as white paper."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    elif mode.startswith("I") or mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        image = Image.fromarray(np.clip(arr / (257.0 if arr.max() > 255 else 1.0), 0, 255).astype(np.uint8))
    elif mode not in ("L", "RGB"):
        image = image.convert("L" if mode == "1" else "RGB")
    # tobytes + frombuffer is ~8x faster than np.asarray for RGB (Pillow stores RGB as 4 bytes a pixel).
    shape = (image.height, image.width) + ((3,) if image.mode == "RGB" else ())
    return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(shape)


def _reduce(arr: np.ndarray, factor: int) -> np.ndarray:
    """Area-average by an integer factor (cv2's fast path needs sizes that divide exactly)."""
    if factor == 1:
        return arr
    h, w = arr.shape[0] // factor, arr.shape[1] // factor
    return cv2.resize(arr[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)


def _colour(work: np.ndarray) -> tuple[float, float]:
    if work.ndim != 3:
        return 0.0, 0.0
    hsv = cv2.cvtColor(_reduce(work, 2), cv2.COLOR_RGB2HSV)
    lit = hsv[..., 2] > 50  # hue and saturation of near-black pixels are noise
    sat = hsv[..., 1][lit]
    if sat.size == 0:
        return 0.0, 0.0
    return round(float(sat.mean()) / 255.0, 4), round(float(np.count_nonzero(sat > 64)) / lit.size, 4)


def _noise_sigma(full: np.ndarray) -> float:
    """Robust noise sigma from four 256 px crops; text edges are a minority, so the median ignores them."""
    h, w = full.shape[:2]
    c = min(256, h, w)
    residuals = []
    for fy, fx in ((0.3, 0.3), (0.3, 0.7), (0.7, 0.3), (0.7, 0.7)):
        y0, x0 = min(max(0, int(fy * h - c / 2)), h - c), min(max(0, int(fx * w - c / 2)), w - c)
        crop = np.ascontiguousarray(full[y0:y0 + c, x0:x0 + c])
        g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
        residuals.append(cv2.absdiff(g, cv2.medianBlur(g, 3)).ravel())
    hist = np.bincount(np.concatenate(residuals), minlength=256).astype(np.float64)
    # 1.72 maps the median |x - median3x3(x)| of i.i.d. Gaussian noise back to its sigma (measured).
    return round(1.72 * _hist_quantile(hist, 0.5), 3)


def _histogram(gray: np.ndarray) -> np.ndarray:
    return cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.float64)


def _hist_quantile(hist: np.ndarray, q: float) -> float:
    """Quantile of a histogram of integer values, interpolated inside the bin; 0 for an empty histogram."""
    cum = np.cumsum(hist)
    if cum.size == 0 or cum[-1] <= 0:
        return 0.0
    k = int(np.searchsorted(cum, q * cum[-1]))
    below = float(cum[k - 1]) if k > 0 else 0.0
    return float(k + (q * cum[-1] - below) / hist[k] - 0.5) if hist[k] > 0 else float(k)


def _otsu(hist: np.ndarray) -> int:
    omega, mu = np.cumsum(hist), np.cumsum(hist * np.arange(hist.size))
    denom = omega * (omega[-1] - omega)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where(denom > 0, (mu[-1] * omega - mu * omega[-1]) ** 2 / denom, -1.0)
    return int(np.argmax(between))


def _binarize(gray: np.ndarray) -> _Ink:
    blurred = cv2.medianBlur(gray, 3)
    hist = _histogram(blurred)
    inverted = _hist_quantile(hist, 0.5) < 96
    if inverted:
        gray, blurred, hist = 255 - gray, 255 - blurred, hist[::-1].copy()
    t = _otsu(hist)
    # 10th percentile: at work scale most ink pixels are anti-aliased stroke edges; the cores are darker.
    ink_level = _hist_quantile(hist[: t + 1], 0.1)
    background = t + 1 + _hist_quantile(hist[t + 1:], 0.5)
    # Spread of the paper from its upper side only: text lies below the paper level, noise on both sides.
    thresh = min(t, int(background - max(15.0, 3.0 * 1.4826 * _hist_quantile(hist[int(background):], 0.5))))
    _, mask = cv2.threshold(blurred, thresh, 255, cv2.THRESH_BINARY_INV)
    # Rules come from the unblurred copy (a 3x3 median erases 1 px lines) at a lenient level that keeps faint
    # rules, but no closer than 3 raw sigma to the paper, or noise would join letters into "rules".
    raw_sigma = 1.4826 * _hist_quantile(_histogram(gray)[int(background):], 0.5)
    rules_thresh = max(thresh, int(min((thresh + background) / 2, background - 3.0 * raw_sigma)))
    _, rules = cv2.threshold(gray, rules_thresh, 255, cv2.THRESH_BINARY_INV)
    ink_ratio = cv2.countNonZero(mask) / float(mask.size)
    is_blank = ink_ratio < 0.0005 or background - ink_level < 20 or thresh <= 0
    return _Ink(mask, rules, thresh, round(ink_ratio, 5), round(background, 2), round(ink_level, 2), inverted,
                is_blank)


def _paper_dpi(width: int, height: int) -> tuple[float | None, str | None]:
    ratio = max(width, height) / min(width, height)
    for aspect, long_in in _PAPER_SIZES:
        if abs(ratio / aspect - 1.0) < 0.02:
            return round(max(width, height) / long_in, 1), "paper_size"
    return None, None


def _deskew_matrix(skew: float, shape: tuple[int, ...]) -> np.ndarray:
    """2x3 affine map (x, y) -> deskewed (x, y): clockwise rotation by `skew` degrees about the centre."""
    c, s = math.cos(math.radians(skew)), math.sin(math.radians(skew))
    cy, cx = shape[0] / 2.0, shape[1] / 2.0
    return np.array([[c, -s, cx - (c * cx - s * cy)], [s, c, cy - (s * cx + c * cy)]], dtype=np.float64)


def _rotate(img: np.ndarray, angle: float) -> np.ndarray:
    m = _deskew_matrix(angle, img.shape)
    # Bilinear resampling blurs every angle except exactly 0, which would then always look sharpest;
    # a fixed 0.21 px shift gives 0 the same average blur as the other angles.
    m[:, 2] += _BLUR_OFFSET
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR)


def _energy(rot: np.ndarray, bounds: np.ndarray, vertical: bool) -> float:
    """Sum of squared line-normal profiles, one per slice bounds[i]..bounds[i+1] along the text lines."""
    return sum(float(np.square(cv2.reduce(rot[a:b] if vertical else rot[:, a:b], 0 if vertical else 1,
                                          cv2.REDUCE_SUM, dtype=cv2.CV_32F)).sum())
               for a, b in zip(bounds[:-1], bounds[1:]) if b > a)


def _peak(angles: np.ndarray, energy: np.ndarray) -> float:
    """Arg-max refined by a parabola through the best sample and its neighbours."""
    i = int(np.argmax(energy))
    if 0 < i < energy.size - 1:
        y0, y1, y2 = energy[i - 1], energy[i], energy[i + 1]
        if y0 - 2.0 * y1 + y2 < 0:
            return float(angles[i] + 0.5 * (y0 - y2) / (y0 - 2.0 * y1 + y2) * (angles[1] - angles[0]))
    return float(angles[i])


def _skew_and_axis(quarter: np.ndarray, half: np.ndarray) -> tuple[float, bool, float]:
    """(skew, text lines vertical?, axis confidence): 1 deg search at 1/4 scale, then 0.5 deg steps at 1/2 scale."""
    # Slices along the lines: neighbouring columns rarely share baselines, one full-width profile blurs them.
    angles = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 0.01, 1.0)
    across_h = np.linspace(0, quarter.shape[1], 5).astype(int)
    across_v = np.linspace(0, quarter.shape[0], 5).astype(int)
    energy = np.array([(_energy(r, across_h, False), _energy(r, across_v, True))
                       for r in (_rotate(quarter, a) for a in angles)]).T
    # How far the best angle stands out: ~1 for text lines on that axis, ~0.0-0.15 across them.
    stand_out = energy.max(axis=1) / np.maximum(np.median(energy, axis=1), 1e-9) - 1.0
    vertical = bool(stand_out[1] > stand_out[0])
    axis_conf = min(1.0, abs(stand_out[1] - stand_out[0]) / 0.3)
    coarse = _peak(angles, energy[int(vertical)])
    # One slice per text column now (a single column is cut in two): the longest runs of shared baselines.
    rot = _rotate(half, coarse)
    along = cv2.reduce(rot, 1 if vertical else 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    lo, hi, g_starts, g_ends = _gutters(along, max(3, int(0.012 * along.size)))
    cuts = (g_starts + g_ends) // 2 if g_starts.size else np.array([(lo + hi) // 2])
    bounds = np.concatenate(([lo], cuts, [hi + 1]))
    fine = coarse + np.arange(-1.0, 1.001, 0.5)
    skew = _peak(fine, np.array([_energy(_rotate(half, a), bounds, vertical) for a in fine]))
    return max(-MAX_SKEW_DEG, min(MAX_SKEW_DEG, skew)), vertical, axis_conf


def _extent(profile: np.ndarray, tail: float) -> tuple[int, int]:
    cum = np.cumsum(profile)
    return int(np.searchsorted(cum, tail * cum[-1])), int(np.searchsorted(cum, (1.0 - tail) * cum[-1]))


def _gutters(along: np.ndarray, min_width: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Text extent (lo, hi) and the gutters (starts, ends; page coordinates) at least `min_width` wide in it."""
    prof = np.convolve(np.maximum(along, 0.0), np.ones(3) / 3.0, mode="same")
    lo, hi = _extent(prof, 0.005)
    # A heading across both columns or a few specks must not close a gutter, hence 10 % of the text level.
    gap = prof[lo:hi + 1] <= 0.1 * float(np.median(prof[lo:hi + 1]))
    edges = np.diff(np.concatenate(([0], gap.astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    wide = ends - starts >= min_width
    return lo, hi, lo + starts[wide], lo + ends[wide]


def _columns(along: np.ndarray, work_dpi: float) -> int:
    """Text blocks side by side along the lines: >= 0.3 in wide and >= 4 % of the ink, between gutters."""
    if along.max() <= 0:  # all the ink is in the table
        return 1
    lo, hi, g_starts, g_ends = _gutters(along, max(3, int(0.12 * work_dpi)))
    cuts = np.concatenate(([lo], np.stack([g_starts, g_ends], axis=1).ravel(), [hi + 1]))
    cum = np.concatenate(([0.0], np.cumsum(np.maximum(along, 0.0))))
    total = cum[hi + 1] - cum[lo]
    return max(1, sum(1 for s, e in zip(cuts[0::2], cuts[1::2])
                      if e - s >= 0.3 * work_dpi and cum[e] - cum[s] >= 0.04 * total))


def _strip_profiles(img: np.ndarray, lo: int, hi: int, strips: int) -> np.ndarray:
    """Row profiles of `strips` equal slices of columns lo..hi: shape (strips, rows)."""
    bounds = np.linspace(lo, hi + 1, strips + 1).astype(int)
    return np.stack([cv2.reduce(img[:, a:b], 1, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
                     for a, b in zip(bounds[:-1], bounds[1:]) if b > a])


def _runs(prof: np.ndarray, rel_thresh: float, min_len: int) -> _Runs:
    """Line runs of each strip's profile (rows with ink above a noise floor) and their x-height bands."""
    strips, length = prof.shape
    # The 20th-percentile row is an inter-line gap: its ink is noise.
    floor = np.percentile(prof, 20, axis=1, keepdims=True)
    prof = np.maximum(prof - floor, 0.0)
    thresh = rel_thresh * prof.max(axis=1, keepdims=True) + 1.5 * floor
    prof = np.concatenate([prof, np.zeros((strips, 1), prof.dtype)], axis=1)  # runs never span two strips
    flat = prof.ravel().astype(np.float64)
    edges = np.diff(np.concatenate(([0], (prof > thresh).ravel().astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    keep = ends - starts >= min_len
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return _Runs(*(np.zeros(0, dtype=np.int64),) * 5)
    rows = np.arange(flat.size)
    run = np.maximum(np.searchsorted(starts, rows, side="right") - 1, 0)
    core = (rows >= starts[run]) & (rows < ends[run]) & (flat >= 0.5 * np.maximum.reduceat(flat, starts)[run])
    first = np.minimum.reduceat(np.where(core, rows, flat.size), starts)
    last = np.maximum.reduceat(np.where(core, rows, -1), starts)
    return _Runs(starts, ends, first, last, starts // (length + 1))


class _CropCues(NamedTuple):
    asymmetry: float  # (ascender-zone glyphs - descender-zone glyphs) / both, over lines having both; > 0: upright
    lines_used: int
    line_height: float  # full px
    ink: float
    background: float


def _crop_cues(full: np.ndarray, ink: _Ink, k: int, skew: float, vertical: bool, quarter: np.ndarray,
               dpi: float) -> _CropCues:
    """Cues that need ~150 dpi, from a crop of the middle of the text: the ascender / descender asymmetry of
    its lines (their zones are 1-2 px tall at work scale), line height and ink contrast."""
    rows = cv2.reduce(quarter, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    cols = cv2.reduce(quarter, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    (r0, r1), (c0, c1), f = _extent(rows, 0.02), _extent(cols, 0.02), 4 * k  # f: quarter px -> full px
    half_h, half_w = max(0.3 * (r1 - r0) * f, 128.0), max(0.3 * (c1 - c0) * f, 128.0)
    cy, cx = (r0 + r1) / 2 * f, (c0 + c1) / 2 * f
    fh, fw = full.shape[:2]
    kc = max(1, round(max(fh, fw) / 1800))
    crop = _reduce(np.ascontiguousarray(full[max(0, int(cy - half_h)):min(fh, int(cy + half_h)),
                                             max(0, int(cx - half_w)):min(fw, int(cx + half_w))]), kc)
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    crop = cv2.medianBlur(255 - crop if ink.inverted else crop, 3)
    hist = _histogram(crop)
    ink_level, background = ink.ink, ink.background
    if hist[: ink.thresh + 1].sum() >= 50:  # else the crop missed the text: keep the work-scale levels
        ink_level = _hist_quantile(hist[: ink.thresh + 1], 0.1)
        background = ink.thresh + 1 + _hist_quantile(hist[ink.thresh + 1:], 0.5)
    _, mask = cv2.threshold(crop, ink.thresh, 255, cv2.THRESH_BINARY_INV)
    mask = cv2.warpAffine(mask, _deskew_matrix(skew, mask.shape), mask.shape[::-1], flags=cv2.INTER_NEAREST)
    if vertical:
        mask = np.ascontiguousarray(mask.T)
    # Table rules and underlines (dilated 1 px, for their anti-aliased fringes) would add ink to whole rows
    # or columns and swamp the thin zones.
    rule_len = max(20, int(0.4 * dpi / kc))
    ruled = cv2.bitwise_or(*(cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, s))
                             for s in ((rule_len, 1), (1, rule_len))))
    mask = cv2.subtract(mask, cv2.dilate(ruled, np.ones((3, 3), np.uint8)))
    runs = _runs(_strip_profiles(mask, 0, mask.shape[1] - 1, 4), rel_thresh=0.01, min_len=4)
    if runs.starts.size == 0:
        return _CropCues(0.0, 0, 0.0, ink_level, background)
    heights = runs.ends - runs.starts
    med = float(np.median(heights))
    # Glyphs crossing a row a little above / below the x-height band: ascenders, capitals and i-dots above,
    # descenders below. Counting glyphs (0->1 steps along the row), not ink, keeps wide descender tails from
    # outweighing thin stems. Only lines with both zones vote: a line with one zone is either prose without
    # descenders or, upside down, digits with commas.
    steps = _strip_profiles(cv2.compare(mask[:, 1:], mask[:, :-1], cv2.CMP_GT), 0, mask.shape[1] - 2, 4) / 255.0
    steps = np.concatenate([steps, np.zeros((steps.shape[0], 1))], axis=1).ravel()
    offset = np.maximum(2, np.round(0.2 * (runs.last - runs.first + 1))).astype(np.int64)
    up, down = runs.first - offset, runs.last + offset
    above = np.where(up >= runs.starts, steps[np.clip(up, 0, steps.size - 1)], 0.0)
    below = np.where(down < runs.ends, steps[np.clip(down, 0, steps.size - 1)], 0.0)
    both = (above > 0) & (below > 0) & (heights <= 2.5 * med)  # taller runs are figures or merged lines
    a, b = float(above[both].sum()), float(below[both].sum())
    return _CropCues((a - b) / (a + b) if both.any() else 0.0, int(both.sum()), med * kc, ink_level, background)


def _table_rules(rules: np.ndarray, skew: float, work_dpi: float) -> tuple[int, int, tuple[int, int, int, int] | None]:
    """(horizontal rules, vertical rules, table box in deskewed work px or None)."""
    h, w = rules.shape
    straight = cv2.warpAffine(rules, _deskew_matrix(skew, (h, w)), (w, h), flags=cv2.INTER_NEAREST)
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
