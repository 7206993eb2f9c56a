"""Image measurements the complexity analysis is built from: loading and reducing a page, binarisation, noise,
colour, paper size, skew and text axis, columns, and text-line runs. Pure numpy/OpenCV, no scoring."""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from maoocr.ocr.ink import otsu_level

MAX_SKEW_DEG = 15.0
# Aspect ratio -> long side in inches. A-series pages share one ratio; A4 is by far the most common.
_PAPER_SIZES = ((math.sqrt(2.0), 11.69), (11.0 / 8.5, 11.0), (14.0 / 8.5, 14.0))
_BLUR_OFFSET = 0.21


class Ink(NamedTuple):
    mask: np.ndarray  # uint8 0/255 at work scale
    rules: np.ndarray  # uint8 0/255 from a lenient threshold of the unblurred page, for ruled lines
    thresh: int  # gray level (after inversion, median-blurred) at or below which a pixel is ink
    ink_ratio: float
    background: float
    ink: float
    inverted: bool
    is_blank: bool


class Runs(NamedTuple):
    """Text-line runs in per-strip profiles, as indices into the strips' profiles laid end to end."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive
    first: np.ndarray  # first row of each run's x-height band (rows >= half the run's peak)
    last: np.ndarray  # its last row
    strips: np.ndarray


def page_array(image: Image.Image) -> np.ndarray:
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


def reduce_by(arr: np.ndarray, factor: int) -> np.ndarray:
    """Area-average by an integer factor (cv2's fast path needs sizes that divide exactly)."""
    if factor == 1:
        return arr
    h, w = arr.shape[0] // factor, arr.shape[1] // factor
    return cv2.resize(arr[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)


def colour_stats(work: np.ndarray) -> tuple[float, float]:
    if work.ndim != 3:
        return 0.0, 0.0
    hsv = cv2.cvtColor(reduce_by(work, 2), cv2.COLOR_RGB2HSV)
    lit = hsv[..., 2] > 50  # hue and saturation of near-black pixels are noise
    sat = hsv[..., 1][lit]
    if sat.size == 0:
        return 0.0, 0.0
    return round(float(sat.mean()) / 255.0, 4), round(float(np.count_nonzero(sat > 64)) / lit.size, 4)


def estimate_noise_sigma(full: np.ndarray) -> float:
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
    return round(1.72 * hist_quantile(hist, 0.5), 3)


def gray_histogram(gray: np.ndarray) -> np.ndarray:
    return cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.float64)


def hist_quantile(hist: np.ndarray, q: float) -> float:
    """Quantile of a histogram of integer values, interpolated inside the bin; 0 for an empty histogram."""
    cum = np.cumsum(hist)
    if cum.size == 0 or cum[-1] <= 0:
        return 0.0
    k = int(np.searchsorted(cum, q * cum[-1]))
    below = float(cum[k - 1]) if k > 0 else 0.0
    value = float(k + (q * cum[-1] - below) / hist[k] - 0.5) if hist[k] > 0 else float(k)
    # Bin k spans k - 0.5 .. k + 0.5; gray levels themselves stop at the first and last bin.
    return min(max(value, 0.0), float(hist.size - 1))


def binarize_page(gray: np.ndarray) -> Ink:
    blurred = cv2.medianBlur(gray, 3)
    hist = gray_histogram(blurred)
    inverted = hist_quantile(hist, 0.5) < 96
    if inverted:
        gray, blurred, hist = 255 - gray, 255 - blurred, hist[::-1].copy()
    t = otsu_level(hist)
    # 10th percentile: at work scale most ink pixels are anti-aliased stroke edges; the cores are darker.
    ink_level = hist_quantile(hist[: t + 1], 0.1)
    background = t + 1 + hist_quantile(hist[t + 1:], 0.5)
    # Spread of the paper from its upper side only: text lies below the paper level, noise on both sides.
    thresh = min(t, int(background - max(15.0, 3.0 * 1.4826 * hist_quantile(hist[int(background):], 0.5))))
    _, mask = cv2.threshold(blurred, thresh, 255, cv2.THRESH_BINARY_INV)
    # Rules come from the unblurred copy (a 3x3 median erases 1 px lines) at a lenient level that keeps faint
    # rules, but no closer than 3 raw sigma to the paper, or noise would join letters into "rules".
    raw_sigma = 1.4826 * hist_quantile(gray_histogram(gray)[int(background):], 0.5)
    rules_thresh = max(thresh, int(min((thresh + background) / 2, background - 3.0 * raw_sigma)))
    _, rules = cv2.threshold(gray, rules_thresh, 255, cv2.THRESH_BINARY_INV)
    ink_ratio = cv2.countNonZero(mask) / float(mask.size)
    is_blank = ink_ratio < 0.0005 or background - ink_level < 20 or thresh <= 0
    return Ink(mask, rules, thresh, round(ink_ratio, 5), round(background, 2), round(ink_level, 2), inverted,
                is_blank)


def paper_dpi_guess(width: int, height: int) -> tuple[float | None, str | None]:
    ratio = max(width, height) / min(width, height)
    for aspect, long_in in _PAPER_SIZES:
        if abs(ratio / aspect - 1.0) < 0.02:
            return round(max(width, height) / long_in, 1), "paper_size"
    return None, None


def deskew_matrix(skew: float, shape: tuple[int, ...]) -> np.ndarray:
    """2x3 affine map (x, y) -> deskewed (x, y): clockwise rotation by `skew` degrees about the centre."""
    c, s = math.cos(math.radians(skew)), math.sin(math.radians(skew))
    cy, cx = shape[0] / 2.0, shape[1] / 2.0
    return np.array([[c, -s, cx - (c * cx - s * cy)], [s, c, cy - (s * cx + c * cy)]], dtype=np.float64)


def rotate_page(img: np.ndarray, angle: float) -> np.ndarray:
    m = deskew_matrix(angle, img.shape)
    # Bilinear resampling blurs every angle except exactly 0, which would then always look sharpest;
    # a fixed 0.21 px shift gives 0 the same average blur as the other angles.
    m[:, 2] += _BLUR_OFFSET
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR)


def line_energy(rot: np.ndarray, bounds: np.ndarray, vertical: bool) -> float:
    """Sum of squared line-normal profiles, one per slice bounds[i]..bounds[i+1] along the text lines."""
    return sum(float(np.square(cv2.reduce(rot[a:b] if vertical else rot[:, a:b], 0 if vertical else 1,
                                          cv2.REDUCE_SUM, dtype=cv2.CV_32F)).sum())
               for a, b in zip(bounds[:-1], bounds[1:]) if b > a)


def refined_peak(angles: np.ndarray, energy: np.ndarray) -> float:
    """Arg-max refined by a parabola through the best sample and its neighbours."""
    i = int(np.argmax(energy))
    if 0 < i < energy.size - 1:
        y0, y1, y2 = energy[i - 1], energy[i], energy[i + 1]
        if y0 - 2.0 * y1 + y2 < 0:
            return float(angles[i] + 0.5 * (y0 - y2) / (y0 - 2.0 * y1 + y2) * (angles[1] - angles[0]))
    return float(angles[i])


def skew_and_axis(quarter: np.ndarray, half: np.ndarray) -> tuple[float, bool, float]:
    """(skew, text lines vertical?, axis confidence): 1 deg search at 1/4 scale, then 0.5 deg steps at 1/2 scale."""
    # Slices along the lines: neighbouring columns rarely share baselines, one full-width profile blurs them.
    angles = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 0.01, 1.0)
    across_h = np.linspace(0, quarter.shape[1], 5).astype(int)
    across_v = np.linspace(0, quarter.shape[0], 5).astype(int)
    energy = np.array([(line_energy(r, across_h, False), line_energy(r, across_v, True))
                       for r in (rotate_page(quarter, a) for a in angles)]).T
    # How far the best angle stands out: ~1 for text lines on that axis, ~0.0-0.15 across them.
    stand_out = energy.max(axis=1) / np.maximum(np.median(energy, axis=1), 1e-9) - 1.0
    vertical = bool(stand_out[1] > stand_out[0])
    axis_conf = min(1.0, abs(stand_out[1] - stand_out[0]) / 0.3)
    coarse = refined_peak(angles, energy[int(vertical)])
    # One slice per text column now (a single column is cut in two): the longest runs of shared baselines.
    rot = rotate_page(half, coarse)
    along = cv2.reduce(rot, 1 if vertical else 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    lo, hi, g_starts, g_ends = find_gutters(along, max(3, int(0.012 * along.size)))
    cuts = (g_starts + g_ends) // 2 if g_starts.size else np.array([(lo + hi) // 2])
    bounds = np.concatenate(([lo], cuts, [hi + 1]))
    fine = coarse + np.arange(-1.0, 1.001, 0.5)
    skew = refined_peak(fine, np.array([line_energy(rotate_page(half, a), bounds, vertical) for a in fine]))
    return max(-MAX_SKEW_DEG, min(MAX_SKEW_DEG, skew)), vertical, axis_conf


def ink_extent(profile: np.ndarray, tail: float) -> tuple[int, int]:
    cum = np.cumsum(profile)
    return int(np.searchsorted(cum, tail * cum[-1])), int(np.searchsorted(cum, (1.0 - tail) * cum[-1]))


def find_gutters(along: np.ndarray, min_width: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Text extent (lo, hi) and the gutters (starts, ends; page coordinates) at least `min_width` wide in it."""
    prof = np.convolve(np.maximum(along, 0.0), np.ones(3) / 3.0, mode="same")
    lo, hi = ink_extent(prof, 0.005)
    # A heading across both columns or a few specks must not close a gutter, hence 10 % of the text level.
    gap = prof[lo:hi + 1] <= 0.1 * float(np.median(prof[lo:hi + 1]))
    edges = np.diff(np.concatenate(([0], gap.astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    wide = ends - starts >= min_width
    return lo, hi, lo + starts[wide], lo + ends[wide]


def count_columns(straight: np.ndarray, work_dpi: float) -> int:
    """Text blocks side by side along the lines (`straight`: deskewed ink mask, lines along axis 1).

    Whole-page profiles miss columns whenever a title, a standfirst or a picture spans a gutter, and unequal
    columns; so the page is cut into bands about half an inch tall, and a gutter is a gap >= 0.12 in wide that
    stays empty through >= 1.5 in of consecutive bands. Each band is then split at the gutters it keeps open;
    the count is the most blocks (>= 0.3 in wide, >= 4 % of the band's ink) any band holds."""
    h, w = straight.shape
    rows = cv2.reduce(straight, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
    if rows.max() <= 0:  # all the ink is in the table
        return 1
    r0, r1 = ink_extent(rows, 0.005)
    band_h = max(4, int(0.5 * work_dpi))
    bounds = list(range(r0, r1 + 1, band_h)) + [r1 + 1]
    profiles = np.stack([cv2.reduce(straight[a:b], 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
                         for a, b in zip(bounds[:-1], bounds[1:]) if b > a])
    min_width = max(3, int(0.12 * work_dpi))
    gaps = np.zeros(profiles.shape, dtype=bool)
    for i, prof in enumerate(profiles):
        if prof.max() <= 0:
            continue
        lo, hi, starts, ends = find_gutters(prof, min_width)
        for s, e in zip(starts, ends):
            gaps[i, s:e] = True
    # Longest run of consecutive bands in which each x lies in a gap.
    run, longest = np.zeros(w, dtype=np.int32), np.zeros(w, dtype=np.int32)
    for row in gaps:
        run = np.where(row, run + 1, 0)
        np.maximum(longest, run, out=longest)
    gutter = longest >= max(2, math.ceil(1.5 * work_dpi / band_h))
    best = 1
    for i, prof in enumerate(profiles):
        total = float(prof.sum())
        if total <= 0:
            continue
        open_here = (gutter & gaps[i]).astype(np.int8)
        edges = np.diff(np.concatenate(([0], open_here, [0])))
        cuts = np.concatenate(([0], np.stack([np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]], axis=1).ravel(),
                               [w]))
        cum = np.concatenate(([0.0], np.cumsum(prof)))
        blocks = 0
        for s, e in zip(cuts[0::2], cuts[1::2]):
            ink = cum[e] - cum[s]
            if ink >= 0.04 * total:
                nz = np.nonzero(prof[s:e])[0]
                if nz.size and nz[-1] - nz[0] + 1 >= 0.3 * work_dpi:
                    blocks += 1
        best = max(best, blocks)
    return best


def strip_profiles(img: np.ndarray, lo: int, hi: int, strips: int) -> np.ndarray:
    """Row profiles of `strips` equal slices of columns lo..hi: shape (strips, rows)."""
    bounds = np.linspace(lo, hi + 1, strips + 1).astype(int)
    return np.stack([cv2.reduce(img[:, a:b], 1, cv2.REDUCE_SUM, dtype=cv2.CV_32F).ravel()
                     for a, b in zip(bounds[:-1], bounds[1:]) if b > a])


def line_runs(prof: np.ndarray, rel_thresh: float, min_len: int) -> Runs:
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
        return Runs(*(np.zeros(0, dtype=np.int64),) * 5)
    rows = np.arange(flat.size)
    run = np.maximum(np.searchsorted(starts, rows, side="right") - 1, 0)
    core = (rows >= starts[run]) & (rows < ends[run]) & (flat >= 0.5 * np.maximum.reduceat(flat, starts)[run])
    first = np.minimum.reduceat(np.where(core, rows, flat.size), starts)
    last = np.maximum.reduceat(np.where(core, rows, -1), starts)
    return Runs(starts, ends, first, last, starts // (length + 1))
