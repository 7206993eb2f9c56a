"""Text lines of a born-digital PDF page read from its own text layer, and whether they can stand in for OCR.

Pages whose text layer is missing, garbled (fonts without a usable Unicode map), an invisible OCR layer over a
scan, or a few characters on a page-sized image are marked untrusted, with a reason, so they are OCR'd instead.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from maoocr.documents import _PDFIUM_LOCK, _open_pdf, _pdf_pixels
from maoocr.ocr.base import RawLine
from maoocr.ocr.text_lines import text_lines
from maoocr.ocr.text_words import CharStats, address, read_words
from maoocr.ocr.types import Box

MIN_CHARS = 20  # fewer characters than this is no text layer to speak of (page numbers, stamps)
SCAN_MAX_CHARS = 200  # images covering most of the page with less text than this: a scan with a stamp or header
SCAN_COVERAGE = 0.6  # share of the page covered by images from which a page with little text is a scan
OCR_LAYER_IMAGE = 0.5  # an image this large under an invisible text layer marks an OCR'd scan
MIN_IMAGE_AREA = 0.05  # image regions smaller than this share of the page rarely hold text worth OCR
MAX_UNMAPPED = 0.10  # share of unmapped / private-use / control characters that makes the layer unreadable
MIN_ALNUM = 0.40  # share of letters and digits below which the "text" is glyph garbage
_INVISIBLE_MODES = (pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium_c.FPDF_TEXTRENDERMODE_CLIP)
_DEVICE_SCALE = 64  # FPDF_PageToDevice answers in integers; a 64x device gives the matrix to 1/64 px


@dataclass
class TextLayerPage:
    """The text layer of one PDF page, in the pixels of the page rendered at the requested dpi.

    `lines`: one per visual line, or per segment of a line where columns or table cells leave a wide gap; the
    polygon is the 4 corners clockwise from the top-left of the upright line, in the rendered page's pixels
    (top-left origin, as `LoadedDocument.render_page` draws it), confidence 1.0. Lines are top to bottom, left
    to right on the upright page. `trusted`: the lines can replace OCR for the whole page; `reason` says why
    (or why not) with numbers. `image_regions`: boxes of embedded images large enough to hold text; on a
    trusted page only these need OCR (rendered crops also show any text-layer text drawn over an image, so
    OCR lines overlapping text-layer lines are duplicates). `char_count`: non-space characters in `lines`.
    `orientation`: clockwise rotation that makes most of the text upright (PageOCR's convention), 0 normally.
    """

    lines: list[RawLine]
    trusted: bool
    reason: str
    image_regions: list[Box] = field(default_factory=list)
    char_count: int = 0
    orientation: int = 0
    width: int = 0
    height: int = 0


def read_text_layer(pdf: bytes | pdfium.PdfDocument, page_index: int, dpi: float) -> TextLayerPage:
    """Lines and trust of page `page_index` (0-based) of `pdf`, boxes in pixels of the page rendered at `dpi`."""
    with _PDFIUM_LOCK:
        doc = _open_pdf(bytes(pdf)) if isinstance(pdf, bytes | bytearray | memoryview) else pdf
        try:
            page = doc[page_index]
            try:
                return _read_page(page, dpi)
            finally:
                page.close()
        finally:
            if doc is not pdf:
                doc.close()


def _read_page(page: pdfium.PdfPage, dpi: float) -> TextLayerPage:
    width, height = _pdf_pixels(*page.get_size(), dpi)
    to_px = _device_matrix(page, width, height)
    images, hidden_objects = _scan_objects(page, to_px, (width, height))
    textpage = page.get_textpage()
    try:
        words = read_words(textpage, to_px, (width, height), hidden_objects)
    finally:
        textpage.close()
    regions = _merge_boxes([box for box, _ in images])
    regions = [b for b in regions if _area(b) >= MIN_IMAGE_AREA * width * height]
    largest = max((_area(b) for b in regions), default=0.0) / (width * height)
    coverage = _coverage(regions, width, height)
    lines, orientation = text_lines(words.boxes, words.texts, words.directions, (width, height))
    chars = sum(len(line.text) - line.text.count(" ") for line in lines)
    trusted, reason = _judge(chars, words.hidden_chars, words.stats, len(lines), regions, largest, coverage)
    return TextLayerPage(lines=lines, trusted=trusted, reason=reason, image_regions=regions, char_count=chars,
                         orientation=orientation, width=width, height=height)


def _judge(chars: int, hidden: int, stats: CharStats, n_lines: int, regions: list[Box], largest: float,
           coverage: float) -> tuple[bool, str]:
    image_note = (f"one image covers {_pct(largest)} of the page" if len(regions) == 1
                  else f"images cover {_pct(coverage)} of the page")
    if chars + hidden == 0:
        if coverage >= SCAN_COVERAGE:
            return False, f"scanned page: {image_note} and there is no text layer"
        return False, "no text layer"
    if hidden >= chars:
        if largest >= OCR_LAYER_IMAGE:
            return False, (f"invisible OCR text over a scanned image: {hidden:,} characters are not drawn and "
                           f"{image_note}; OCR again for lines that match the image")
        return False, f"text layer is invisible: {hidden:,} of {hidden + chars:,} characters are not drawn"
    total = max(1, stats.nonspace)
    unmapped = max(stats.bad / total, stats.sampled_unmapped)
    if unmapped >= MAX_UNMAPPED:
        return False, f"text layer unreadable: {_pct(unmapped)} of characters unmapped (broken font encoding)"
    if stats.alnum < MIN_ALNUM * total:
        return False, (f"text layer unreadable: only {_pct(stats.alnum / total)} of its {total:,} characters are "
                       "letters or digits (broken font encoding)")
    if chars < SCAN_MAX_CHARS and coverage >= SCAN_COVERAGE:
        return False, f"scanned page: {image_note} and the text layer holds {chars:,} characters"
    if chars < MIN_CHARS:
        return False, f"text layer holds only {chars:,} characters"
    reason = f"text layer: {chars:,} characters in {n_lines:,} lines"
    if regions:
        reason += (f"; {len(regions)} image region{'s' if len(regions) > 1 else ''} "
                   f"({_pct(coverage)} of the page) to OCR")
    return True, reason


def _pct(share: float) -> str:
    return f"{round(100 * share)} %"


# -- geometry ------------------------------------------------------------------------------------------------------

def _device_matrix(page: pdfium.PdfPage, width: int, height: int) -> tuple[float, ...]:
    """(a, b, c, d, e, f): page space -> rendered pixels, x' = a x + c y + e, y' = b x + d y + f.

    Asked of pdfium itself so the page's /Rotate and crop box are applied exactly as when rendering."""
    s = _DEVICE_SCALE
    dx, dy = ctypes.c_int(), ctypes.c_int()

    def to_device(x: float, y: float) -> tuple[float, float]:
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width * s, height * s, 0, x, y, dx, dy)
        return dx.value / s, dy.value / s

    (ox, oy), (xx, xy), (yx, yy) = to_device(0.0, 0.0), to_device(1000.0, 0.0), to_device(0.0, 1000.0)
    return (xx - ox) / 1000.0, (xy - oy) / 1000.0, (yx - ox) / 1000.0, (yy - oy) / 1000.0, ox, oy


def _map_box(m: tuple[float, ...], left: float, bottom: float, right: float, top: float) -> Box:
    a, b, c, d, e, f = m
    xs = [a * x + c * y + e for x, y in ((left, bottom), (right, top), (left, top), (right, bottom))]
    ys = [b * x + d * y + f for x, y in ((left, bottom), (right, top), (left, top), (right, bottom))]
    return min(xs), min(ys), max(xs), max(ys)


def _compose(m: tuple[float, ...], n: tuple[float, ...]) -> tuple[float, ...]:
    """m after n (n maps form space to its parent's space)."""
    a, b, c, d, e, f = m
    na, nb, nc, nd, ne, nf = n
    return (a * na + c * nb, b * na + d * nb, a * nc + c * nd, b * nc + d * nd,
            a * ne + c * nf + e, b * ne + d * nf + f)


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _clip(box: Box, size: tuple[int, int]) -> Box:
    return max(0.0, box[0]), max(0.0, box[1]), min(float(size[0]), box[2]), min(float(size[1]), box[3])


def _intersection(a: Box, b: Box) -> Box:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _merge_boxes(boxes: list[Box], slack: float = 2.0) -> list[Box]:
    """Overlapping or touching boxes merged (scanners often store a page as strips of images)."""
    merged = [list(b) for b in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(len(merged) - 1, i, -1):
                p, q = merged[i], merged[j]
                if p[0] - slack <= q[2] and q[0] - slack <= p[2] and p[1] - slack <= q[3] and q[1] - slack <= p[3]:
                    merged[i] = [min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3])]
                    del merged[j]
                    changed = True
    return [(round(b[0], 1), round(b[1], 1), round(b[2], 1), round(b[3], 1)) for b in merged]


def _coverage(boxes: list[Box], width: int, height: int) -> float:
    if not boxes:
        return 0.0
    grid = np.zeros((100, 100), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        grid[int(max(0, y0) * 100 / height):int(np.ceil(min(height, y1) * 100 / height)),
             int(max(0, x0) * 100 / width):int(np.ceil(min(width, x1) * 100 / width))] = True
    return float(grid.mean())


# -- page objects ----------------------------------------------------------------------------------------------------

def _scan_objects(page: pdfium.PdfPage, to_px: tuple[float, ...],
                  size: tuple[int, int]) -> tuple[list[tuple[Box, int]], set[int]]:
    """Image boxes (pixels, with their paint order) and the text objects nobody can see: render mode invisible,
    or painted before a large image that covers them (OCR tools put the text layer under the scan)."""
    images: list[tuple[Box, int]] = []
    texts: list[tuple[object, tuple[float, ...]]] = []
    invisible: set[int] = set()
    left, bottom, right, top = ctypes.c_float(), ctypes.c_float(), ctypes.c_float(), ctypes.c_float()
    fs_matrix = pdfium_c.FS_MATRIX()

    def walk(parent: object, is_form: bool, matrix: tuple[float, ...], depth: int) -> None:
        count = (pdfium_c.FPDFFormObj_CountObjects if is_form else pdfium_c.FPDFPage_CountObjects)(parent)
        get = pdfium_c.FPDFFormObj_GetObject if is_form else pdfium_c.FPDFPage_GetObject
        for i in range(max(0, count)):
            obj = get(parent, i)
            kind = pdfium_c.FPDFPageObj_GetType(obj)
            if kind == pdfium_c.FPDF_PAGEOBJ_TEXT:
                if pdfium_c.FPDFTextObj_GetTextRenderMode(obj) in _INVISIBLE_MODES:
                    invisible.add(address(obj))
                else:
                    texts.append((obj, matrix))
            elif kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                if pdfium_c.FPDFPageObj_GetBounds(obj, left, bottom, right, top):
                    box = _map_box(matrix, left.value, bottom.value, right.value, top.value)
                    images.append((box, len(texts)))
            elif kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < 8:
                # Objects inside a form XObject report bounds in the form's space.
                inner = matrix
                if pdfium_c.FPDFPageObj_GetMatrix(obj, fs_matrix):
                    fm = fs_matrix
                    inner = _compose(matrix, (fm.a, fm.b, fm.c, fm.d, fm.e, fm.f))
                walk(obj, True, inner, depth + 1)

    walk(page.raw, False, to_px, 0)
    # Visible-mode text painted before a large image and inside it is hidden under the image.
    covers = [(box, n_before) for box, n_before in images if _area(box) >= OCR_LAYER_IMAGE * size[0] * size[1]]
    for box, n_before in covers:
        for obj, matrix in texts[:n_before]:
            if pdfium_c.FPDFPageObj_GetBounds(obj, left, bottom, right, top):
                text_box = _clip(_map_box(matrix, left.value, bottom.value, right.value, top.value), size)
                if _area(text_box) <= 1.5 * _area(_intersection(text_box, box)):
                    invisible.add(address(obj))  # type: ignore[attr-defined]
    return images, invisible
