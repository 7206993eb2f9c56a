"""Ink and paper on a page image: the gray level that separates them."""

from __future__ import annotations

import numpy as np


def otsu_level(hist: np.ndarray) -> int:
    """Otsu's threshold, in the middle of the levels that split the histogram equally well.

    A bilevel page (only 0 and 255) splits equally well at every level from 0 to 254; the first of them, 0,
    would call nothing ink."""
    omega, mu = np.cumsum(hist), np.cumsum(hist * np.arange(hist.size))
    denom = omega * (omega[-1] - omega)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where(denom > 0, (mu[-1] * omega - mu * omega[-1]) ** 2 / denom, -1.0)
    top = float(between.max())
    if top <= 0:  # one gray level: nothing to split
        return int(np.argmax(between))
    best = np.nonzero(between >= top * (1.0 - 1e-9))[0]
    return int(best[0] + best[-1]) // 2 if best[-1] - best[0] == best.size - 1 else int(best[0])
