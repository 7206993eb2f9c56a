"""Renders pages and documents whose text is known exactly, plus corrupt and truncated variants (tests, benchmarks)."""

from __future__ import annotations

import io
import random
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO_ROOT = Path(__file__).resolve().parent.parent
DPI = 150
# 11 pt body text at 150 dpi is ~23 px; 24 px keeps the generated pages close to a real 150 dpi scan.
BODY_PX = 24
TITLE_PX = 34
MARGIN = 90
LINE_GAP = 12

ENGLISH_PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog while the farmer counts 1,284 sheep in the northern field.",
    "Optical character recognition turns scanned pages into searchable text. Accuracy depends on resolution, "
    "contrast and the quality of the printed glyphs.",
    "Invoice 2024-0117 was paid on March 5th; the remaining balance of $312.40 is due within thirty days.",
]

COLUMN_LEFT = [
    "Rivers carry sediment from the mountains to the sea over many thousands of years.",
    "Where the current slows the sand settles and builds wide deltas full of life.",
]
COLUMN_RIGHT = [
    "Glaciers move slowly but they shape valleys with enormous force and patience.",
    "When the ice melts it leaves behind lakes, boulders and long ridges of gravel.",
]

CHINESE_PARAGRAPHS = [
    "光学字符识别技术可以把扫描的纸质文档转换成可以搜索和编辑的文字。",
    "今天天气很好，我们一起去公园散步，看见湖边有很多人在钓鱼。",
    "这个系统支持中文和英文的混合识别，并且能够处理多页的文件。",
]


@dataclass
class Page:
    """A rendered page and its ground truth: the text lines in reading order, grouped into blocks."""

    image: Image.Image
    lines: list[str]
    # Block index of each line (e.g. 0 = title, 1 = left column, 2 = right column) for reading-order checks.
    blocks: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _fc_match(pattern: str) -> str | None:
    try:
        out = subprocess.run(["fc-list", pattern, "file"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    return files[0] if files else None


def _find_font(candidates: list[str], pattern: str) -> str | None:
    for path in candidates:
        if Path(path).is_file():
            return path
    return _fc_match(pattern)


def ensure_fonts() -> None:
    """Run scripts/install_fonts.sh once if a font is missing (it is idempotent and quiet)."""
    if latin_font_path() and cjk_font_path():
        return
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install_fonts.sh")], check=False, timeout=600)


def require_fonts(cjk: bool = False) -> None:
    """Install the fonts if they are missing; skip the calling test module when they still are."""
    import pytest

    ensure_fonts()
    if latin_font_path() is None or (cjk and cjk_font_path() is None):
        pytest.skip("TTF fonts missing; run scripts/install_fonts.sh")


def latin_font_path() -> str | None:
    return _find_font(["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"], ":family=DejaVu Sans:style=Book")


def cjk_font_path() -> str | None:
    return _find_font(["/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
                       "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"], ":lang=zh")


def _font(cjk: bool, size: int) -> ImageFont.FreeTypeFont:
    path = cjk_font_path() if cjk else latin_font_path()
    if path is None:
        raise RuntimeError("no TTF font found; run scripts/install_fonts.sh")
    return ImageFont.truetype(path, size)


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int, cjk: bool = False) -> list[str]:
    """Greedy wrap at spaces (Latin) or between any characters (CJK) so each line fits max_width pixels."""
    units = list(text) if cjk else text.split(" ")
    sep = "" if cjk else " "
    lines: list[str] = []
    current = ""
    for unit in units:
        candidate = unit if not current else current + sep + unit
        if font.getlength(candidate) <= max_width or not current:
            current = candidate
        else:
            lines.append(current)
            current = unit
    if current:
        lines.append(current)
    return lines


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent + LINE_GAP


def render_page(paragraphs: list[str], *, cjk: bool = False, width: int = 1240, title: str | None = None) -> Page:
    """Single-column page: optional title, then the paragraphs wrapped to the page width, one blank line apart."""
    body = _font(cjk, BODY_PX)
    head = _font(cjk, TITLE_PX)
    text_width = width - 2 * MARGIN
    placed: list[tuple[str, ImageFont.FreeTypeFont, int]] = []
    y = MARGIN
    if title:
        placed.append((title, head, y))
        y += _line_height(head) + LINE_GAP
    for para in paragraphs:
        for line in wrap(para, body, text_width, cjk):
            placed.append((line, body, y))
            y += _line_height(body)
        y += _line_height(body) // 2
    image = Image.new("RGB", (width, y + MARGIN), "white")
    draw = ImageDraw.Draw(image)
    for line, font, ly in placed:
        draw.text((MARGIN, ly), line, font=font, fill="black")
    return Page(image, [p[0] for p in placed], [0] * len(placed))


def english_page() -> Page:
    return render_page(ENGLISH_PARAGRAPHS, title="Quarterly Report")


def chinese_page() -> Page:
    return render_page(CHINESE_PARAGRAPHS, cjk=True, title="文字识别测试")


def two_column_page(width: int = 1240) -> Page:
    """Full-width title, then two columns separated by a wide gutter; blocks: 0 title, 1 left, 2 right."""
    body = _font(False, BODY_PX)
    head = _font(False, TITLE_PX)
    gutter = 80
    col_width = (width - 2 * MARGIN - gutter) // 2
    title = "Landscapes Shaped by Water and Ice"
    y0 = MARGIN + _line_height(head) + 2 * LINE_GAP
    columns: list[list[str]] = []
    for paras in (COLUMN_LEFT, COLUMN_RIGHT):
        col: list[str] = []
        for para in paras:
            col.extend(wrap(para, body, col_width))
        columns.append(col)
    rows = max(len(c) for c in columns)
    image = Image.new("RGB", (width, y0 + rows * _line_height(body) + MARGIN), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), title, font=head, fill="black")
    lines, blocks = [title], [0]
    for ci, col in enumerate(columns):
        x = MARGIN + ci * (col_width + gutter)
        for ri, line in enumerate(col):
            draw.text((x, y0 + ri * _line_height(body)), line, font=body, fill="black")
            lines.append(line)
            blocks.append(ci + 1)
    return Page(image, lines, blocks)


def rotated(page: Page, degrees: int) -> Page:
    """The page turned counter-clockwise by `degrees` (as a scanner fed sideways would produce)."""
    return Page(page.image.rotate(degrees, expand=True, fillcolor="white"), page.lines, page.blocks)


def noisy(page: Page, seed: int = 7) -> Page:
    """Scan-like degradation: lowered contrast, slight blur, gaussian noise."""
    rng = np.random.default_rng(seed)
    gray = np.asarray(page.image.convert("L"), dtype=np.float32)
    # Map black..white to 80..200: dark-grey ink on grey paper.
    gray = 80.0 + gray * (120.0 / 255.0)
    blurred = Image.fromarray(gray.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    arr = np.asarray(blurred, dtype=np.float32) + rng.normal(0.0, 18.0, size=gray.shape)
    return Page(Image.fromarray(arr.clip(0, 255).astype(np.uint8)).convert("RGB"), page.lines, page.blocks)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


PAGE_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def numbered_pages(count: int, width: int = 1240) -> list[Page]:
    """Short pages that name their number and are 60 px narrower each, so page order is checkable either way."""
    return [render_page([f"This is page {PAGE_WORDS[i % 10]} of the sample document."], width=width - 60 * i)
            for i in range(count)]


def pdf_bytes(pages: list[Page]) -> bytes:
    images = [p.image.convert("RGB") for p in pages]
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=float(DPI))
    return buf.getvalue()


def tiff_bytes(pages: list[Page], compression: str = "tiff_lzw") -> bytes:
    images = [p.image.convert("RGB") for p in pages]
    buf = io.BytesIO()
    images[0].save(buf, format="TIFF", save_all=True, append_images=images[1:], compression=compression,
                   dpi=(DPI, DPI))
    return buf.getvalue()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(16, int(len(data) * keep))]


def corrupted(data: bytes, seed: int = 3, header: int = 64, trailer: int = 0) -> bytes:
    """Overwrite the middle (keeping `header` leading and `trailer` final bytes) with random bytes."""
    rng = random.Random(seed)
    body = rng.randbytes(len(data) - header - trailer)
    return data[:header] + body + (data[len(data) - trailer:] if trailer else b"")


JOURNAL_HEADER = "Journal of Inland Waters 43 (2016) 197-211"


def born_digital_paper(pages: int = 2) -> tuple[bytes, list[list[str]]]:
    """A two-column PDF with a text layer: a running header and a page number on every page, a title on the first.
    Returns the bytes and each page's paragraphs in reading order (left column, then right)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4)
    width, height = A4
    rng = random.Random(11)
    words = ("river delta sediment glacier valley harbour lantern orchard meadow village council budget season "
             "harvest weather station engineer bridge museum gallery painter chapter winter summer market").split()
    truth: list[list[str]] = []
    for number in range(1, pages + 1):
        pdf.setFont("Helvetica", 8)
        pdf.drawString(60, height - 40, JOURNAL_HEADER)
        pdf.drawCentredString(width / 2, 30, str(number))
        top = height - 80
        paragraphs: list[str] = []
        if number == 1:
            pdf.setFont("Helvetica-Bold", 16)
            pdf.drawString(60, top, "Sediment Transport in Northern Deltas")
            paragraphs.append("Sediment Transport in Northern Deltas")
            top -= 40
        for x in (60, width / 2 + 10):
            y = top
            while y > 80:
                sentence = " ".join(rng.choice(words) for _ in range(rng.randint(18, 30))).capitalize() + "."
                lines = textwrap.wrap(sentence, 45)
                if y - 12 * len(lines) < 70:
                    break
                pdf.setFont("Helvetica", 9)
                for line in lines:
                    pdf.drawString(x, y, line)
                    y -= 12
                y -= 8
                paragraphs.append(sentence)
        truth.append(paragraphs)
        pdf.showPage()
    pdf.save()
    return buf.getvalue(), truth
