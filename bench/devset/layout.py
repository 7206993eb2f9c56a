"""A small typesetter on a reportlab canvas that remembers what it put where: justified, hyphenated columns that
flow around obstacles, titles, rules, tables and images, plus the reading-order record the checks are built from.

Coordinates are PDF points measured from the top-left corner of the page (reportlab's y is flipped on drawing).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reportlab.lib.pagesizes import letter
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

Align = Literal["justify", "left", "center", "right"]
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1, top-down

_FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"),
              Path("/usr/share/fonts/truetype/liberation2")]
# role -> (TTF file names to try, reportlab standard font to fall back to)
_FONT_ROLES = {
    "serif": (["DejaVuSerif.ttf", "LiberationSerif-Regular.ttf"], "Times-Roman"),
    "serif_bold": (["DejaVuSerif-Bold.ttf", "LiberationSerif-Bold.ttf"], "Times-Bold"),
    "serif_italic": (["DejaVuSerif-Italic.ttf", "LiberationSerif-Italic.ttf"], "Times-Italic"),
    "sans": (["DejaVuSans.ttf", "LiberationSans-Regular.ttf"], "Helvetica"),
    "sans_bold": (["DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf"], "Helvetica-Bold"),
    "cond": (["DejaVuSansCondensed.ttf", "LiberationSansNarrow-Regular.ttf"], "Helvetica"),
    "cond_bold": (["DejaVuSansCondensed-Bold.ttf", "LiberationSansNarrow-Bold.ttf"], "Helvetica-Bold"),
    "mono": (["DejaVuSansMono.ttf", "LiberationMono-Regular.ttf"], "Courier"),
}
_fonts: dict[str, str] = {}
_VOWELS = set("aeiouyAEIOUY")
_WORD = re.compile(r"^([\"'(]*)([A-Za-z]+)([.,;:!?\"')]*)$")


def fonts() -> dict[str, str]:
    """role -> registered font name; TTFs (embedded, with a text layer) where installed, else the PDF base 14."""
    if not _fonts:
        for role, (files, fallback) in _FONT_ROLES.items():
            path = next((d / f for f in files for d in _FONT_DIRS if (d / f).exists()), None)
            if path is None:
                _fonts[role] = fallback
                continue
            name = f"devset-{role}"
            pdfmetrics.registerFont(TTFont(name, str(path)))
            _fonts[role] = name
    return _fonts


def width(text: str, font: str, size: float) -> float:
    return pdfmetrics.stringWidth(text, font, size)


@dataclass
class Style:
    font: str = "serif"  # a role of fonts()
    size: float = 9.5
    leading: float = 11.5
    align: Align = "justify"
    indent: float = 0.0  # first line
    space_after: float = 0.0
    hyphenate: bool = True

    @property
    def face(self) -> str:
        return fonts()[self.font]


@dataclass
class Block:
    """A piece of the page's body in reading order (running elements live in Sheet.running)."""

    kind: str  # title, heading, text, caption, quote, equation, table, meta
    text: str
    chain: str = ""  # blocks of one chain are read one after the other (order checks pair neighbours in a chain)
    floating: bool = False  # outside the text flow: its place in the reading order is not fixed


@dataclass
class Frame:
    x: float
    top: float
    width: float
    bottom: float
    words: list[str | None] = field(default_factory=list)  # whole words placed here, None where text breaks


class Sheet:
    """One page being typeset: a canvas plus the record of blocks, running strings, tables, frames and photos."""

    def __init__(self, pagesize: tuple[float, float] = letter) -> None:
        self.width, self.height = pagesize
        self.buffer = io.BytesIO()
        self.canvas = canvas.Canvas(self.buffer, pagesize=pagesize, invariant=1)
        self.blocks: list[Block] = []
        self.running: list[tuple[str, str]] = []  # (kind, text): header, footer, page_number
        self.tables: list[list[list[str]]] = []
        self.frames: list[Frame] = []  # every flow's frames, in reading order
        self.photos: list[Rect] = []  # where halftoned pictures are, for the bilevel scan
        self.chain = ""  # the chain new blocks join
        self.order: list[tuple[str, int, str]] = []
        # "word word" junctions where text jumps over a float (a pull quote, a photo): sentences across them
        # are not asked for as present, since where a reader puts the float is a matter of taste
        self.interrupted: list[str] = []  # (text, frame index, note): text before that frame starts

    # -- drawing primitives ----------------------------------------------------------------------------------
    def string(self, text: str, x: float, y: float, font: str, size: float, align: Align = "left") -> None:
        """One line of text with its baseline at y."""
        c = self.canvas
        c.setFont(fonts()[font], size)
        if align == "center":
            c.drawCentredString(x, self.height - y, text)
        elif align == "right":
            c.drawRightString(x, self.height - y, text)
        else:
            c.drawString(x, self.height - y, text)

    def rule(self, x0: float, y0: float, x1: float, y1: float, weight: float = 0.6, gray: float = 0.0) -> None:
        c = self.canvas
        c.setLineWidth(weight)
        c.setStrokeGray(gray)
        c.line(x0, self.height - y0, x1, self.height - y1)
        c.setStrokeGray(0)

    def box(self, rect: Rect, fill_gray: float) -> None:
        c = self.canvas
        c.setFillGray(fill_gray)
        c.rect(rect[0], self.height - rect[3], rect[2] - rect[0], rect[3] - rect[1], stroke=0, fill=1)
        c.setFillGray(0)

    def image(self, picture, rect: Rect, halftone: bool = True) -> None:
        self.canvas.drawImage(ImageReader(picture), rect[0], self.height - rect[3], rect[2] - rect[0],
                              rect[3] - rect[1])
        if halftone:
            self.photos.append(rect)

    def running_string(self, kind: str, text: str, x: float, y: float, font: str, size: float,
                       align: Align = "left") -> None:
        self.string(text, x, y, font, size, align)
        self.running.append((kind, text))

    def lines(self, text: str, x: float, y: float, w: float, style: Style, kind: str = "text") -> float:
        """Typeset `text` in a box of width w starting at y (top); record it as one block; returns the y below."""
        flow = Flow(self, [Frame(x, y, w, self.height)], register=False)
        flow.paragraph(text, style, kind=kind)
        return flow.y

    def pdf(self) -> bytes:
        self.canvas.showPage()
        self.canvas.save()
        return self.buffer.getvalue()


class Flow:
    """Text poured through frames (columns) in order, skipping or shortening lines where obstacles are."""

    def __init__(self, sheet: Sheet, frames: list[Frame], obstacles: list[Rect] | None = None, gap: float = 8.0,
                 register: bool = True) -> None:
        self.sheet, self.frames, self.obstacles, self.gap = sheet, frames, obstacles or [], gap
        self.index = 0
        self.y = frames[0].top
        self.full = False
        self.jumped = False  # the last slot lay past an obstacle that filled the line
        if register:
            sheet.frames.extend(frames)

    @property
    def frame(self) -> Frame:
        return self.frames[self.index]

    def next_frame(self) -> bool:
        self.frame.words.append(None)
        if self.index + 1 >= len(self.frames):
            self.full = True
            return False
        self.index += 1
        self.y = self.frame.top
        return True

    def space(self, points: float) -> None:
        if self.y > self.frame.top:  # no blank space at the head of a column
            self.y += points

    def room(self) -> float:
        return self.frame.bottom - self.y

    def _slot(self, leading: float, min_fraction: float = 0.4) -> tuple[float, float, float] | None:
        """(x0, x1, top) of the next line, moving on past obstacles and full frames; None when all are full."""
        while not self.full:
            f = self.frame
            top, bottom = self.y, self.y + leading
            if bottom > f.bottom + 0.01:
                if not self.next_frame():
                    return None
                continue
            x0, x1 = f.x, f.x + f.width
            for ox0, oy0, ox1, oy1 in self.obstacles:
                if oy0 < bottom and oy1 > top and ox0 < x1 and ox1 > x0:
                    if ox0 - x0 >= x1 - ox1:
                        x1 = min(x1, ox0 - self.gap)
                    else:
                        x0 = max(x0, ox1 + self.gap)
            if x1 - x0 < min_fraction * f.width:
                self.y = bottom
                self.jumped = True
                continue
            self.y = bottom
            return x0, x1, top
        return None

    def paragraph(self, text: str, style: Style, kind: str = "text") -> bool:
        """Pour a paragraph; records it (as far as it got) as a block. False when the frames ran out."""
        words = text.split()
        tokens = list(words)  # tokens[i] shrinks to the tail of a word hyphenated across lines
        placed: list[str] = []
        split_at: tuple[Frame, int] | None = None  # where a word hyphenated at a line end was recorded
        i, first = 0, True
        face, size = style.face, style.size
        space = width(" ", face, size)
        while i < len(tokens):
            slot = self._slot(style.leading)
            if slot is None:
                break
            x0, x1, top = slot
            if self.jumped and i > 0:
                self.sheet.interrupted.append(words[i] if split_at else f"{words[i - 1]} {words[i]}")
            self.jumped = False
            if first:
                x0 += style.indent
            avail = x1 - x0
            frame = self.frame
            if split_at is not None:
                if split_at[0] is not frame:  # a word split across columns is whole in neither
                    split_at[0].words[split_at[1]] = None
                split_at = None
                start = i + 1
            else:
                start = i
            line: list[str] = []
            used = 0.0
            hyphenated = False
            while i < len(tokens):
                w = width(tokens[i], face, size)
                need = w + (space if line else 0)
                if used + need <= avail or not line:
                    line.append(tokens[i])
                    used += need
                    i += 1
                    continue
                if style.hyphenate and avail - used > 3 * space:
                    split = _hyphenate(tokens[i], avail - used - space, face, size)
                    if split:
                        line.append(split[0] + "-")
                        used += space + width(split[0] + "-", face, size)
                        tokens[i] = split[1]
                        hyphenated = True
                break
            frame.words.extend(words[start:i])
            placed.extend(words[len(placed):i])
            if hyphenated:
                split_at = (frame, len(frame.words))
                frame.words.append(words[i])
            last = i >= len(tokens)
            baseline = top + (style.leading - size) / 2 + size * 0.8
            self._draw(line, x0, x1, baseline, style, justify=style.align == "justify" and not last)
            first = False
        if split_at is not None:  # the frames ran out right after a hyphen: the page shows the head only
            placed.append(line[-1])
            split_at[0].words[split_at[1]] = None
        self.sheet.blocks.append(Block(kind, " ".join(placed), self.sheet.chain))
        self.y += style.space_after
        return i >= len(tokens)

    def _draw(self, line: list[str], x0: float, x1: float, baseline: float, style: Style, justify: bool) -> None:
        c, face, size = self.sheet.canvas, style.face, style.size
        c.setFont(face, size)
        y = self.sheet.height - baseline
        if justify and len(line) > 1:
            natural = sum(width(w, face, size) for w in line)
            gap = (x1 - x0 - natural) / (len(line) - 1)
            x = x0
            for w in line:
                c.drawString(x, y, w)
                x += width(w, face, size) + gap
            return
        text = " ".join(line)
        if style.align == "center":
            c.drawCentredString((x0 + x1) / 2, y, text)
        elif style.align == "right":
            c.drawRightString(x1, y, text)
        else:
            c.drawString(x0, y, text)

    def heading(self, text: str, style: Style, kind: str = "heading") -> bool:
        """A heading kept with at least two lines of what follows."""
        if self.room() < style.leading * 3.2 and self.y > self.frame.top:
            if not self.next_frame():
                return False
        self.frame.words.append(None)
        done = self.paragraph(text, style, kind)
        self.frame.words.append(None)
        return done

    def line(self, text: str, style: Style, kind: str = "equation") -> bool:
        """A display line (an equation) centred in the column, kept out of the snippets."""
        slot = self._slot(style.leading)
        if slot is None:
            return False
        x0, x1, top = slot
        self.sheet.string(text, (x0 + x1) / 2, top + (style.leading - style.size) / 2 + style.size * 0.8,
                          style.font, style.size, "center")
        self.frame.words.append(None)
        self.sheet.blocks.append(Block(kind, text, self.sheet.chain))
        return True

    def table(self, grid: list[list[str]], caption: str | None, cap_style: Style, cell: Style) -> bool:
        """A booktabs-style table (rules at top, under the header row, at the bottom) with its caption above."""
        f = self.frame
        row_h = cell.leading * 1.25
        cap_lines = 0 if caption is None else 1 + int(width(caption, cap_style.face, cap_style.size) / f.width)
        need = cap_lines * cap_style.leading + len(grid) * row_h + 10
        if self.room() < need:
            if not self.next_frame() or self.room() < need:
                return False
        f = self.frame
        f.words.append(None)
        if caption:
            self.paragraph(caption, cap_style, kind="caption")
            self.frame.words.append(None)
        self.y = draw_table(self.sheet, grid, f.x, self.y + 2, f.width, cell) + 4
        return True


def draw_table(sheet: Sheet, grid: list[list[str]], x: float, y: float, w: float, cell: Style,
               header_font: str | None = None, rules: Literal["booktabs", "grid"] = "booktabs") -> float:
    """Draws the grid (first row = header); numbers right-aligned; records it as a table. Returns the y below."""
    face, size = cell.face, cell.size
    pad = 4.0
    cols = len(grid[0])
    natural = [max(width(row[c], face, size) for row in grid) + 2 * pad for c in range(cols)]
    extra = max(0.0, w - sum(natural))
    widths = [n + extra * n / sum(natural) for n in natural]
    row_h = cell.leading * 1.25
    xs = [x]
    for cw in widths:
        xs.append(xs[-1] + cw)
    sheet.rule(x, y, xs[-1], y, 0.8)
    for r, row in enumerate(grid):
        baseline = y + row_h * (r + 1) - row_h * 0.3
        font = (header_font or "serif_bold" if cell.font.startswith("serif") else "sans_bold") if r == 0 else cell.font
        for c, value in enumerate(row):
            numeric = bool(re.fullmatch(r"[-+$£€]?[\d.,%]+", value))
            if numeric and r > 0:
                sheet.string(value, xs[c + 1] - pad, baseline, font, size, "right")
            else:
                sheet.string(value, xs[c] + pad, baseline, font, size)
        line_y = y + row_h * (r + 1)
        if r == 0 or r == len(grid) - 1:
            sheet.rule(x, line_y, xs[-1], line_y, 0.8 if r == len(grid) - 1 else 0.5)
        elif rules == "grid":
            sheet.rule(x, line_y, xs[-1], line_y, 0.3)
    if rules == "grid":
        for xv in xs:
            sheet.rule(xv, y, xv, y + row_h * len(grid), 0.3)
    sheet.tables.append([list(row) for row in grid])
    sheet.blocks.append(Block("table", "\n".join(" ".join(row) for row in grid), sheet.chain))
    return y + row_h * len(grid)


def _hyphenate(token: str, room: float, face: str, size: float) -> tuple[str, str] | None:
    """Split a word at a vowel-consonant boundary so that head + '-' fits in `room`; None when it can't."""
    m = _WORD.match(token)
    if not m or len(m.group(2)) < 7:
        return None
    lead, core, trail = m.groups()
    best = None
    for p in range(3, len(core) - 2):
        if core[p - 1] in _VOWELS and core[p] not in _VOWELS or core[p - 1] == core[p]:
            head = lead + core[:p]
            if width(head + "-", face, size) <= room:
                best = (head, core[p:] + trail)
    return best
