"""Unit checks derived from a typeset page: sentences that must be present, running elements that must be
absent, snippets whose order is fixed by the layout (column ends before the next column's start, paragraphs in
sequence, headlines before their articles) and table neighbours."""

from __future__ import annotations

import random

from bench.devset.layout import Frame, Sheet
from bench.devset.prose import split_sentences
from bench.devset.scoring import normalize
from bench.devset.truth import Check, Grid

SNIPPET_WORDS = 6
MAX_PRESENT = 12
MAX_ORDER = 18
MAX_TABLE = 8


def derive(sheet: Sheet, text: str, rng: random.Random) -> list[Check]:
    body = normalize(text)

    def unique(snippet: str, shortest: int = 12) -> bool:
        return len(snippet) >= shortest and body.count(normalize(snippet)) == 1

    checks = _present(sheet, unique, rng)
    checks += [Check(kind="absent", text=t, line_only=kind == "page_number", note=kind) for kind, t in sheet.running]
    checks += _order(sheet, unique, rng)
    for grid in sheet.tables:
        checks += _table(grid, rng)
    return checks


def _present(sheet: Sheet, unique, rng: random.Random) -> list[Check]:
    sentences = [s for b in sheet.blocks if b.kind in ("text", "quote", "caption")
                 for s in split_sentences(b.text) if 30 <= len(s) <= 150 and unique(s, 30)
                 and not any(junction in s for junction in sheet.interrupted)]
    short = [b.text for b in sheet.blocks if b.kind in ("title", "heading", "meta") and 8 <= len(b.text) <= 90
             and unique(b.text)]
    picked = rng.sample(sentences, min(len(sentences), MAX_PRESENT - min(4, len(short))))
    picked += rng.sample(short, min(len(short), MAX_PRESENT - len(picked)))
    return [Check(kind="present", text=t) for t in picked]


def _runs(frame: Frame) -> list[list[str]]:
    runs, current = [], []
    for word in frame.words:
        if word is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(word)
    if current:
        runs.append(current)
    return [r for r in runs if len(r) >= SNIPPET_WORDS]


def _order(sheet: Sheet, unique, rng: random.Random) -> list[Check]:
    starts, ends = [], []
    for frame in sheet.frames:
        runs = _runs(frame)
        starts.append(" ".join(runs[0][:SNIPPET_WORDS]) if runs else None)
        ends.append(" ".join(runs[-1][-SNIPPET_WORDS:]) if runs else None)
    pairs: list[tuple[str, str, str]] = []
    for k in range(len(sheet.frames) - 1):
        if ends[k] and starts[k + 1]:
            pairs.append((ends[k], starts[k + 1], f"end of column {k + 1} before the start of column {k + 2}"))
    for text, index, note in sheet.order:
        if index < len(starts) and starts[index]:
            pairs.append((text, starts[index], note))
    within = [(starts[k], ends[k], f"top of column {k + 1} before its bottom") for k in range(len(sheet.frames))
              if starts[k] and ends[k] and len(sum(_runs(sheet.frames[k]), [])) >= 3 * SNIPPET_WORDS]
    sequence = []
    for chain in dict.fromkeys(b.chain for b in sheet.blocks):
        heads = [" ".join(b.text.split()[:SNIPPET_WORDS]) for b in sheet.blocks
                 if b.chain == chain and b.kind not in ("table", "equation") and b.text]
        sequence += [(a, b, "blocks in sequence") for a, b in zip(heads, heads[1:])]
    for grid in sheet.tables:
        longest = [max(row, key=len) for row in grid]
        sequence += [(a, b, "table rows in sequence") for a, b in zip(longest, longest[1:])
                     if unique(a, 6) and unique(b, 6)]
    pairs = [p for p in pairs if unique(p[0]) and unique(p[1])]
    extra = [p for p in within + sequence if unique(p[0]) and unique(p[1])]
    pairs += rng.sample(extra, min(len(extra), max(0, MAX_ORDER - len(pairs))))
    return [Check(kind="order", text=a, other=b, note=note) for a, b, note in pairs]


def _table(grid: Grid, rng: random.Random) -> list[Check]:
    cells = [cell for row in grid for cell in row]
    ok = {cell for cell in cells if cell.strip() and cells.count(cell) == 1}
    pairs = []
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            if cell not in ok:
                continue
            if c + 1 < len(row) and row[c + 1] in ok:
                pairs.append((cell, row[c + 1], "left_of"))
            if r + 1 < len(grid) and c < len(grid[r + 1]) and grid[r + 1][c] in ok:
                pairs.append((cell, grid[r + 1][c], "above"))
    picked = rng.sample(pairs, min(len(pairs), MAX_TABLE))
    return [Check(kind="table", text=a, other=b, relation=rel, note=f"{a!r} {rel.replace('_', ' ')} {b!r}")
            for a, b, rel in picked]
