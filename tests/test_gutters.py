"""Lines that the text detector runs across a narrow column gutter come back as one line per column."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from devtools import docgen
from maoocr.ocr.geometry import bounding_box
from maoocr.ocr.metrics import cer
from maoocr.ocr.registry import get_ocr_engine

WORDS = ("river delta sediment glacier valley harbour lantern orchard meadow village council budget season harvest "
         "weather station engineer bridge museum gallery painter chapter winter summer market").split()


def narrow_columns(gutter: int) -> tuple[Image.Image, list[str], list[str], int]:
    """Two justified-looking columns at 150 dpi with a `gutter` px gap; returns the page, each column's lines and
    the gutter's centre."""
    docgen.require_fonts()
    font = docgen.ImageFont.truetype(str(docgen.latin_font_path()), 22)
    image = Image.new("RGB", (1000, 700), "white")
    draw = ImageDraw.Draw(image)
    rng = random.Random(5)
    width = 380
    columns: list[list[str]] = [[], []]
    for c, x in enumerate((60, 60 + width + gutter)):
        for row in range(16):
            words: list[str] = []
            while font.getlength(" ".join(words + ["river"])) < width - 10:
                words.append(rng.choice(WORDS))
            line = " ".join(words)
            # Stretch the spaces so each line ends at the column's right edge, as justified type does.
            spare = (width - font.getlength(line)) / max(1, len(words) - 1)
            cursor = x
            for word in words:
                draw.text((cursor, 40 + row * 38), word, font=font, fill="black")
                cursor += font.getlength(word + " ") + spare
            columns[c].append(line)
    return image, columns[0], columns[1], 60 + width + gutter // 2


def test_no_line_crosses_a_narrow_gutter_and_both_columns_are_read_in_order():
    image, left, right, middle = narrow_columns(gutter=16)
    page = get_ocr_engine("rapidocr").recognize(image)
    for line in page.lines:
        x0, _, x1, _ = bounding_box(line.polygon)
        assert not x0 < middle - 4 < middle + 4 < x1, f"line crosses the gutter: {line.text!r}"
    in_order = cer(" ".join(left + right), " ".join(page.text.split()))
    interleaved = cer(" ".join(a + " " + b for a, b in zip(left, right, strict=True)), " ".join(page.text.split()))
    assert in_order <= 0.05 < interleaved, (in_order, interleaved)
    assert page.columns == 2
