"""A page whose layout or table model fails still comes back, ordered from its lines, saying why; a PDF page whose
text layer cannot be trusted is OCR'd instead, and its strategy reason says why."""

from __future__ import annotations

from maoocr.ocr.base import RawLine, assemble_page
from maoocr.ocr.layout import LayoutRegion
from maoocr.ocr.page_builder import PageStructurer
from maoocr.ocr.registry import get_ocr_engine
from maoocr.ocr.text_layer import TextLayerPage
from maoocr.pipeline.page import process_page
from maoocr.pipeline.strategy import ResourceState
from maoocr.protocol.ocr import OCROptions
from devtools import docgen


class BrokenLayout:
    def detect(self, image):
        raise RuntimeError("onnxruntime: out of memory")


class TableOnly:
    def detect(self, image):
        return [LayoutRegion("table", (0, 0, 600, 200), 0.9)]


class BrokenTables:
    def recognize(self, crop, words):
        raise ValueError("degenerate crop")


def rows() -> list[RawLine]:
    lines = []
    for r in range(4):
        y = 20 + 40 * r
        for x0, x1, text in ((10, 60, str(r)), (100, 300, "Chart plotter mount"), (400, 480, f"{r}.20")):
            lines.append(RawLine(text, [(x0, y), (x1, y), (x1, y + 24), (x0, y + 24)], 0.99))
    return lines


def test_a_failing_layout_model_leaves_the_page_in_line_order_with_a_note():
    image = docgen.english_page().image
    expected = get_ocr_engine("rapidocr").recognize(image)
    raw = [RawLine(line.text, line.polygon, line.confidence) for line in expected.lines]
    page = assemble_page("rapidocr", raw, 0, image.size, {}, image, PageStructurer(BrokenLayout(), None))
    assert "layout model failed" in page.layout_note and "out of memory" in page.layout_note
    assert page.blocks and " ".join(page.text.split()) == " ".join(expected.text.split())


def test_a_failing_table_model_keeps_the_table_as_lines_with_a_note():
    from PIL import Image

    image = Image.new("RGB", (600, 200), "white")
    page = assemble_page("rapidocr", rows(), 0, image.size, {}, image, PageStructurer(TableOnly(), BrokenTables()))
    table = [b for b in page.blocks if b.type == "table"]
    assert len(table) == 1 and table[0].table is None and "Chart plotter mount" in table[0].text
    assert "table recognition failed" in page.layout_note


def test_an_untrusted_text_layer_sends_the_page_to_ocr_and_says_why():
    image = docgen.english_page().image
    layer = TextLayerPage(lines=[RawLine("\ufffd\ufffd", [(0, 0), (9, 0), (9, 9), (0, 9)], 1.0)], trusted=False,
                          reason="text layer unreadable: 92 % of characters unmapped (broken font encoding)")
    result = process_page(image, 0, 1, OCROptions(), ResourceState(), lambda strategy: get_ocr_engine("rapidocr"),
                          text_layer=layer)
    assert result.strategy != "text_layer" and "\ufffd" not in result.text
    assert result.strategy_reason.startswith("text layer not used: text layer unreadable")
    assert "Quarterly Report" in result.text
