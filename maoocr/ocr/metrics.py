"""Character error rate (edit distance over reference length), for tests and benchmarks."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalize_text(text: str, *, keep_spaces: bool = True) -> str:
    """NFKC (full-width punctuation -> ASCII), whitespace runs -> one space (or removed), stripped."""
    text = unicodedata.normalize("NFKC", text)
    return _SPACES.sub(" " if keep_spaces else "", text).strip()


def cer(reference: str, hypothesis: str, *, keep_spaces: bool = True) -> float:
    """Character error rate of `hypothesis` against `reference` after `normalize_text`; 0.0 is perfect.

    Use keep_spaces=False for scripts written without spaces (Chinese, Japanese).
    """
    ref = normalize_text(reference, keep_spaces=keep_spaces)
    hyp = normalize_text(hypothesis, keep_spaces=keep_spaces)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
