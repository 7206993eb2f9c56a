"""Born-digital PDFs read from their own text layer: lines where the text renders, columns and cells kept apart,
and pages whose text layer cannot stand in for OCR (garbled fonts, scans, invisible OCR text) marked untrusted."""

from __future__ import annotations

import io
import time
import zlib

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from reportlab.platypus import Table, TableStyle

from bench.complexity_bench import font
from devtools.docgen import COLUMN_LEFT, COLUMN_RIGHT, ENGLISH_PARAGRAPHS
from maoocr.documents import load_document
from maoocr.ocr.geometry import bounding_box
from maoocr.ocr.text_layer import TextLayerPage, read_text_layer

DPI = 150
SCALE = DPI / 72.0
WIDTH_PT, HEIGHT_PT = A4


def make_pdf(draw, rotate: int = 0) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    draw(c)
    c.showPage()
    c.save()
    if not rotate:
        return buf.getvalue()
    # reportlab's own page rotation also swaps the media box; /Rotate alone is what scanners and tools write.
    doc = pdfium.PdfDocument(buf.getvalue())
    doc[0].set_rotation(rotate)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def words(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = " ".join(ENGLISH_PARAGRAPHS + COLUMN_LEFT + COLUMN_RIGHT).split()
    return [vocab[i] for i in rng.integers(0, len(vocab), size=n)]


def two_columns(c: canvas.Canvas) -> None:
    c.setFont("Helvetica-Bold", 16)
    c.drawString(60, 790, "Two columns of running text")
    c.setFont("Helvetica", 10)
    for row in range(40):
        y = 760 - 16 * row
        c.drawString(60, y, " ".join(words(6, row)))  # left column: x 60..~280
        c.drawString(320, y, " ".join(words(6, 100 + row)))  # right column from x 320


def text_image(size: tuple[int, int], lines: list[str], px: int = 40) -> Image.Image:
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * int(px * 1.5)), line, font=font(px), fill=0)
    return img


def ink(doc_bytes: bytes) -> np.ndarray:
    return np.asarray(load_document(doc_bytes).render_page(0).convert("L")) < 160


def boxes(page: TextLayerPage) -> list[tuple[float, float, float, float]]:
    return [bounding_box(line.polygon) for line in page.lines]


def assert_boxes_cover_the_ink(page: TextLayerPage, mask: np.ndarray, pad: int = 3) -> None:
    """Every inked pixel lies in some line box, and every box is tight around ink along the line."""
    covered = np.zeros_like(mask)
    for x0, y0, x1, y1 in boxes(page):
        covered[max(0, int(y0) - pad):int(y1) + pad + 1, max(0, int(x0) - pad):int(x1) + pad + 1] = True
        inside = mask[int(y0):int(y1) + 1, int(x0):int(x1) + 1]
        assert inside.any(), (x0, y0, x1, y1)
        ys, xs = np.nonzero(inside)
        # Loose boxes run from the font's ascent to its descent: ink fills most, but not all, of the height.
        assert xs.min() <= pad and xs.max() >= inside.shape[1] - 1 - pad - 2, (x0, y0, x1, y1)
        assert ys.max() - ys.min() >= 0.5 * inside.shape[0]
    stray = mask & ~covered
    assert stray.sum() == 0, f"{stray.sum()} inked pixels outside every line box, e.g. at {np.argwhere(stray)[:3]}"


def test_two_columns_stay_apart_and_boxes_sit_on_the_ink() -> None:
    pdf = make_pdf(two_columns)
    page = load_document(pdf).text_layer(0)
    assert page is not None and page.trusted, page
    assert page.reason.startswith("text layer: ") and f"in {len(page.lines)} lines" in page.reason
    assert len(page.lines) == 81 and page.image_regions == [] and page.orientation == 0
    gutter = (282 * SCALE, 318 * SCALE)
    for x0, _, x1, _ in boxes(page):
        assert x1 < gutter[0] or x0 > gutter[1], "a line crosses the gutter"
    texts = [line.text for line in page.lines]
    assert texts[0] == "Two columns of running text"
    assert " ".join(words(6, 7)) in texts and " ".join(words(6, 107)) in texts
    assert page.char_count == sum(len(t.replace(" ", "")) for t in texts)
    assert all(line.confidence == 1.0 and len(line.polygon) == 4 for line in page.lines)
    assert_boxes_cover_the_ink(page, ink(pdf))


def test_table_cells_are_separate_segments() -> None:
    data = [["Item", "Quantity", "Unit price", "Total"]] + [
        [f"Widget {i}", str(i * 3), f"{i * 1.25:.2f}", f"{i * 3 * 1.25:.2f}"] for i in range(1, 9)]

    def draw(c: canvas.Canvas) -> None:
        c.setFont("Helvetica", 11)
        c.drawString(60, 780, "Order summary for the second quarter")
        table = Table(data, colWidths=[120, 80, 90, 90])
        table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, (0, 0, 0)), ("FONTSIZE", (0, 0), (-1, -1), 10)]))
        table.wrapOn(c, 400, 400)
        table.drawOn(c, 60, 500)

    page = read_text_layer(make_pdf(draw), 0, DPI)
    assert page.trusted
    texts = [line.text for line in page.lines]
    assert texts[0] == "Order summary for the second quarter"
    cells = [cell for row in data for cell in row]
    assert sorted(texts[1:]) == sorted(cells)
    # Row by row, left to right.
    assert texts[1:5] == data[0] and texts[5:9] == data[1]


def _raw_pdf(content: bytes, font: bytes) -> bytes:
    """A one-page PDF written by hand: `font` is the font dictionary used as /F1 by `content`."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> "
               b"/Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(zlib.compress(content))
               + zlib.compress(content) + b"\nendstream",
               font]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def test_font_without_unicode_mapping_is_untrusted() -> None:
    # A subset-style font: codes 1..26 named /g1../g26, which no glyph list maps to Unicode, and no ToUnicode.
    names = b" ".join(b"/g%d" % i for i in range(1, 27))
    font = (b"<< /Type /Font /Subtype /Type1 /BaseFont /ABCDEF+Custom /FirstChar 1 /LastChar 26 "
            b"/Widths [" + b" ".join([b"500"] * 26) + b"] /Encoding << /Type /Encoding /Differences [1 "
            + names + b"] >> >>")
    lines = []
    for row in range(30):
        codes = bytes((row * 7 + k) % 26 + 1 for k in range(40))
        escaped = b"".join(b"\\%03o" % c for c in codes)
        lines.append(b"BT /F1 11 Tf 60 %d Td (%s) Tj ET" % (780 - 20 * row, escaped))
    page = read_text_layer(_raw_pdf(b"\n".join(lines), font), 0, DPI)
    assert not page.trusted
    assert "unmapped (broken font encoding)" in page.reason, page.reason
    assert page.reason.startswith("text layer unreadable: ")


def test_a_few_characters_are_not_a_text_layer() -> None:
    helvetica = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    content = b"\n".join(b"BT /F1 11 Tf 60 %d Td (Text) Tj ET" % (780 - 20 * row) for row in range(3))
    page = read_text_layer(_raw_pdf(content, helvetica), 0, DPI)
    assert (page.trusted, page.reason, len(page.lines)) == (False, "text layer holds only 12 characters", 3)


def test_image_only_pdf_is_a_scan() -> None:
    scan = text_image((1240, 1754), ENGLISH_PARAGRAPHS * 4)

    def draw(c: canvas.Canvas) -> None:
        c.drawImage(ImageReader(scan), 0, 0, WIDTH_PT, HEIGHT_PT)

    page = read_text_layer(make_pdf(draw), 0, DPI)
    assert not page.trusted and page.lines == [] and page.char_count == 0
    assert page.reason == "scanned page: one image covers 100 % of the page and there is no text layer"
    assert page.image_regions == [(0.0, 0.0, 1241.0, 1755.0)] or len(page.image_regions) == 1


def test_invisible_ocr_text_over_a_scan_is_untrusted() -> None:
    scan = text_image((1240, 1754), ENGLISH_PARAGRAPHS * 4)

    def draw(c: canvas.Canvas) -> None:
        c.drawImage(ImageReader(scan), 0, 0, WIDTH_PT, HEIGHT_PT)
        text = c.beginText()
        text.setTextRenderMode(3)
        text.setFont("Helvetica", 19)
        for i, line in enumerate(ENGLISH_PARAGRAPHS * 4):
            text.setTextOrigin(19, HEIGHT_PT - 40 - i * 29)
            text.textLine(line)
        c.drawText(text)

    page = read_text_layer(make_pdf(draw), 0, DPI)
    assert not page.trusted and page.lines == []
    assert page.reason.startswith("invisible OCR text over a scanned image: ") and "OCR again" in page.reason


def test_text_hidden_under_a_scan_is_untrusted() -> None:
    scan = text_image((1240, 1754), ENGLISH_PARAGRAPHS * 4)

    def draw(c: canvas.Canvas) -> None:
        c.setFont("Helvetica", 19)
        for i, line in enumerate(ENGLISH_PARAGRAPHS * 4):
            c.drawString(19, HEIGHT_PT - 40 - i * 29, line)
        c.drawImage(ImageReader(scan), 0, 0, WIDTH_PT, HEIGHT_PT)  # painted over the text

    page = read_text_layer(make_pdf(draw), 0, DPI)
    assert not page.trusted and page.reason.startswith("invisible OCR text over a scanned image: ")


def test_mixed_page_is_trusted_and_names_the_image_to_ocr() -> None:
    figure = text_image((900, 500), ["Figure text only", "an image can hold"])

    def draw(c: canvas.Canvas) -> None:
        c.setFont("Helvetica", 10)
        for row in range(25):
            c.drawString(60, 780 - 14 * row, " ".join(words(10, row)))
        c.drawImage(ImageReader(figure), 60, 100, 432, 240)  # x 60..492 pt, y 100..340 pt from the bottom

    page = read_text_layer(make_pdf(draw), 0, DPI)
    assert page.trusted, page.reason
    assert len(page.lines) == 25 and "1 image region" in page.reason
    assert len(page.image_regions) == 1
    expected = (60 * SCALE, (HEIGHT_PT - 340) * SCALE, 492 * SCALE, (HEIGHT_PT - 100) * SCALE)
    assert np.allclose(page.image_regions[0], expected, atol=1.5)
    assert not any("Figure" in line.text for line in page.lines)


def test_rotated_page_boxes_are_in_the_rendered_frame() -> None:
    pdf = make_pdf(two_columns, rotate=90)
    doc = load_document(pdf)
    rendered = doc.render_page(0)
    page = doc.text_layer(0)
    assert page is not None and page.trusted
    assert rendered.size == (page.width, page.height) and rendered.width > rendered.height
    # The page turns clockwise on display, so its text runs down: a quarter turn counter-clockwise reads it.
    assert page.orientation == 270 and len(page.lines) == 81
    for line in page.lines:
        x0, y0, x1, y1 = bounding_box(line.polygon)
        if len(line.text) > 8:
            assert y1 - y0 > 3 * (x1 - x0), line
    title = page.lines[0]
    assert title.text == "Two columns of running text"
    # Corners start at the top-left of the upright line: on the rendered page that is its top-right corner.
    (ax, ay), (bx, by) = title.polygon[0], title.polygon[1]
    assert ax > bx - 1 and by > ay + 100
    assert_boxes_cover_the_ink(_rotated_view(page), np.rot90(ink(pdf)))


def _rotated_view(page: TextLayerPage) -> TextLayerPage:
    """The same lines on the page turned upright (rotate the rendered page counter-clockwise)."""
    from maoocr.ocr.base import RawLine  # noqa: PLC0415

    width = page.width
    lines = [RawLine(line.text, [(y, width - x) for x, y in line.polygon], 1.0) for line in page.lines]
    return TextLayerPage(lines, page.trusted, page.reason, [], page.char_count)


def test_images_and_pages_without_text_layer() -> None:
    png = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(png, format="PNG")
    assert load_document(png.getvalue()).text_layer(0) is None
    blank = read_text_layer(make_pdf(lambda c: None), 0, DPI)
    assert (blank.trusted, blank.reason, blank.lines, blank.char_count) == (False, "no text layer", [], 0)


def test_dense_page_is_read_in_milliseconds() -> None:
    def dense(c: canvas.Canvas) -> None:
        c.setFont("Helvetica", 8)
        for row in range(76):
            for x in (40, 300):
                c.drawString(x, 800 - 10 * row, " ".join(words(9, row * 2 + x)))

    doc = pdfium.PdfDocument(make_pdf(dense))
    read_text_layer(doc, 0, DPI)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        page = read_text_layer(doc, 0, DPI)
        times.append(time.perf_counter() - start)
    ms = min(times) * 1000
    print(f"text layer: {page.char_count} characters, {len(page.lines)} lines in {ms:.1f} ms")
    assert page.char_count > 5000 and len(page.lines) == 152
    assert ms < 50  # a few ms on an idle core; generous for shared test machines


@pytest.mark.parametrize("dpi", [72, 300])
def test_boxes_scale_with_dpi(dpi: int) -> None:
    pdf = make_pdf(two_columns)
    at_150, other = read_text_layer(pdf, 0, 150), read_text_layer(pdf, 0, dpi)
    for a, b in zip(boxes(at_150), boxes(other), strict=True):
        assert np.allclose(np.array(a) * dpi / 150, b, atol=1.0)
