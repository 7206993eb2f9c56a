"""Document loading: format sniffing, limits, corrupt and truncated files, page ranges, multi-page formats."""

from __future__ import annotations

import io
import struct
import zlib

import pypdfium2 as pdfium
import pytest
from PIL import Image

from devtools import docgen
from maoocr.documents import DocumentLimits, load_document, sniff_format
from maoocr.errors import InvalidRequest, PayloadTooLarge, UnprocessableDocument, UnsupportedMediaType


@pytest.fixture(scope="module", autouse=True)
def _fonts() -> None:
    docgen.require_fonts()


@pytest.fixture(scope="module")
def pages() -> list[docgen.Page]:
    return docgen.numbered_pages(3)


@pytest.fixture(scope="module")
def samples(pages: list[docgen.Page]) -> dict[str, bytes]:
    image = pages[0].image
    return {
        "png": docgen.encode(image, "PNG"),
        "jpeg": docgen.encode(image, "JPEG", quality=90),
        "webp": docgen.encode(image, "WEBP", quality=90),
        "bmp": docgen.encode(image, "BMP"),
        "tiff": docgen.tiff_bytes(pages),
        "pdf": docgen.pdf_bytes(pages),
    }


def _png_declaring(width: int, height: int) -> bytes:
    """A structurally valid PNG whose IHDR declares width x height but whose pixel data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def _pdf_with_page_size(width_pt: float, height_pt: float) -> bytes:
    pdf = pdfium.PdfDocument.new()
    pdf.new_page(width_pt, height_pt)
    buf = io.BytesIO()
    pdf.save(buf)
    pdf.close()
    return buf.getvalue()


# -- format recognition -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "bmp", "tiff", "pdf"])
def test_format_comes_from_content_not_file_name(fmt: str, samples: dict[str, bytes], tmp_path) -> None:
    # Stored under a name claiming another type: only the bytes reach load_document, and they decide.
    misleading = tmp_path / ("scan.pdf" if fmt != "pdf" else "scan.png")
    misleading.write_bytes(samples[fmt])
    doc = load_document(misleading.read_bytes(), DocumentLimits())
    assert doc.format == fmt
    assert sniff_format(samples[fmt]) == fmt
    image = doc.render_page(0)
    assert image.mode == "RGB"
    assert image.size[0] > 1000


@pytest.mark.parametrize("data, seen", [
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00", "GIF"),
    (b"PK\x03\x04\x14\x00\x06\x00", "ZIP"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
    (b"hello, this is plain text", "unrecognised signature (first bytes 68 65 6c 6c"),
    (b"BM this starts like a bitmap but is text", "unrecognised signature"),
    (b"", "empty"),
])
def test_unknown_formats_are_415_naming_what_was_seen(data: bytes, seen: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        load_document(data, DocumentLimits())
    assert seen in info.value.message
    assert info.value.http_status == 415


# -- limits -------------------------------------------------------------------------------------------------------

def test_too_many_bytes_is_413_before_anything_else() -> None:
    # Not even a valid document: the size check must come first (cheapest, and protects the sniffer).
    with pytest.raises(PayloadTooLarge) as info:
        load_document(b"\x00" * 2048, DocumentLimits(max_bytes=1024))
    assert "2048 bytes" in info.value.message and info.value.http_status == 413


def test_too_many_pages_is_413(samples: dict[str, bytes]) -> None:
    for fmt in ("pdf", "tiff"):
        with pytest.raises(PayloadTooLarge, match="3 pages selected; the limit is 2"):
            load_document(samples[fmt], DocumentLimits(max_pages=2))
        # The limit applies to the pages asked for, so a smaller range of the same file is fine.
        assert load_document(samples[fmt], DocumentLimits(max_pages=2), page_range=(2, 3)).page_count == 2


def test_too_many_pixels_is_413(samples: dict[str, bytes]) -> None:
    for fmt in ("png", "jpeg", "tiff", "pdf"):
        with pytest.raises(PayloadTooLarge, match="pixels"):
            load_document(samples[fmt], DocumentLimits(max_pixels=100_000))


def test_pixel_limit_uses_declared_size_before_decoding() -> None:
    # 100 MP declared but only 64 bytes of pixels: decoding would report truncation, the size check must win.
    with pytest.raises(PayloadTooLarge, match="10000x10000"):
        load_document(_png_declaring(10_000, 10_000), DocumentLimits())


def test_decompression_bomb_is_413() -> None:
    # Past twice MAX_IMAGE_PIXELS PIL refuses to open the file at all; that must still be a 413, not a 422.
    with pytest.raises(PayloadTooLarge, match="too large"):
        load_document(_png_declaring(100_000, 100_000), DocumentLimits())
    assert DocumentLimits().max_pixels == Image.MAX_IMAGE_PIXELS


def test_pdf_pixel_limit_uses_page_size_times_dpi() -> None:
    data = _pdf_with_page_size(72 * 60, 72 * 60)  # 60 x 60 inches: 81 MP at 150 dpi
    with pytest.raises(PayloadTooLarge, match="9000x9000"):
        load_document(data, DocumentLimits(pdf_dpi=150))
    # The same page is acceptable at a resolution that keeps it under the limit.
    doc = load_document(data, DocumentLimits(pdf_dpi=36))
    assert doc.render_page(0).size == (2160, 2160)


# -- corrupt and truncated files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "bmp", "tiff", "pdf"])
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_files_are_422(fmt: str, keep: float, samples: dict[str, bytes]) -> None:
    with pytest.raises(UnprocessableDocument) as info:
        load_document(docgen.truncated(samples[fmt], keep), DocumentLimits())
    assert info.value.http_status == 422
    assert info.value.message  # the reason is reported


def test_truncated_uncompressed_tiff_names_the_missing_data(pages: list[docgen.Page]) -> None:
    data = docgen.tiff_bytes(pages, compression="raw")
    with pytest.raises(UnprocessableDocument, match=r"TIFF page \d is truncated"):
        load_document(docgen.truncated(data, 0.9), DocumentLimits())


def test_truncated_pdf_reason(samples: dict[str, bytes]) -> None:
    with pytest.raises(UnprocessableDocument, match="PDF is truncated"):
        load_document(docgen.truncated(samples["pdf"], 0.9), DocumentLimits())


@pytest.mark.parametrize("fmt, trailer", [("png", 0), ("jpeg", 0), ("webp", 0), ("tiff", 0), ("pdf", 64)])
def test_corrupt_files_are_422(fmt: str, trailer: int, samples: dict[str, bytes]) -> None:
    with pytest.raises(UnprocessableDocument):
        doc = load_document(docgen.corrupted(samples[fmt], trailer=trailer), DocumentLimits())
        list(doc.iter_pages())  # some corruption only shows when a page is decoded


# -- pages ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pdf", "tiff"])
def test_multi_page_counts_and_order(fmt: str, samples: dict[str, bytes], pages: list[docgen.Page]) -> None:
    doc = load_document(samples[fmt], DocumentLimits())
    assert (doc.page_count, doc.total_pages, doc.page_numbers) == (3, 3, [1, 2, 3])
    rendered = list(doc.iter_pages())
    assert len(rendered) == 3
    # Pages were generated with distinct widths; at 150 dpi the PDF renders back to the same pixels (+-1).
    for image, page in zip(rendered, pages, strict=True):
        assert abs(image.width - page.image.width) <= 1 and abs(image.height - page.image.height) <= 1


@pytest.mark.parametrize("fmt", ["pdf", "tiff"])
def test_page_range_selects_and_clamps(fmt: str, samples: dict[str, bytes], pages: list[docgen.Page]) -> None:
    doc = load_document(samples[fmt], DocumentLimits(), page_range=(2, 99))
    assert (doc.page_count, doc.total_pages, doc.page_numbers) == (2, 3, [2, 3])
    assert abs(doc.render_page(0).width - pages[1].image.width) <= 1
    assert abs(doc.render_page(1).width - pages[2].image.width) <= 1
    with pytest.raises(IndexError):
        doc.render_page(2)
    single = load_document(samples[fmt], DocumentLimits(), page_range=(3, 3))
    assert single.page_numbers == [3]


@pytest.mark.parametrize("page_range", [(0, 2), (3, 2), (4, 5)])
def test_invalid_page_range_is_400(page_range: tuple[int, int], samples: dict[str, bytes]) -> None:
    with pytest.raises(InvalidRequest):
        load_document(samples["pdf"], DocumentLimits(), page_range=page_range)


def test_pdf_renders_at_configured_dpi(samples: dict[str, bytes], pages: list[docgen.Page]) -> None:
    doc = load_document(samples["pdf"], DocumentLimits(pdf_dpi=75))
    width, height = doc.render_page(0).size
    assert abs(width - pages[0].image.width / 2) <= 1 and abs(height - pages[0].image.height / 2) <= 1


def test_transparent_png_renders_on_white() -> None:
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (50, 25, 150, 75))
    rendered = load_document(docgen.encode(image, "PNG"), DocumentLimits()).render_page(0)
    assert rendered.getpixel((5, 5)) == (255, 255, 255)
    assert rendered.getpixel((100, 50)) == (0, 0, 0)


def test_sixteen_bit_png_keeps_its_contrast() -> None:
    image = Image.new("I;16", (200, 100), 60000)
    image.paste(5000, (50, 25, 150, 75))
    rendered = load_document(docgen.encode(image, "PNG"), DocumentLimits()).render_page(0)
    assert rendered.getpixel((5, 5))[0] > 200 and rendered.getpixel((100, 50))[0] < 50


def test_jpeg_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (300, 100), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = docgen.encode(image, "JPEG", exif=exif.tobytes())
    assert load_document(data, DocumentLimits()).render_page(0).size == (100, 300)
