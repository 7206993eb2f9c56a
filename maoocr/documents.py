"""Load uploaded documents (images, multi-page TIFF, PDF) safely: sniff the format, enforce limits, render lazily."""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import pypdfium2 as pdfium
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from maoocr.errors import InvalidRequest, PayloadTooLarge, UnprocessableDocument, UnsupportedMediaType

if TYPE_CHECKING:
    from maoocr.ocr.text_layer import TextLayerPage

DocumentFormat = Literal["png", "jpeg", "webp", "bmp", "tiff", "pdf"]

# PIL's own name for each format we accept; a file whose magic bytes and decoder disagree is rejected.
_PIL_FORMATS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}
# Known but unsupported signatures, so the 415 message can say what the upload looked like.
_OTHER_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF87a", 0, "GIF image"), (b"GIF89a", 0, "GIF image"), (b"PK\x03\x04", 0, "ZIP archive (e.g. DOCX/XLSX)"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000 image"), (b"\xff\x4f\xff\x51", 0, "JPEG 2000 codestream"),
    (b"ftypheic", 4, "HEIC image"), (b"ftypheix", 4, "HEIC image"), (b"ftypmif1", 4, "HEIF image"),
    (b"ftypavif", 4, "AVIF image"), (b"\x1f\x8b", 0, "gzip data"), (b"7z\xbc\xaf\x27\x1c", 0, "7z archive"),
    (b"Rar!", 0, "RAR archive"), (b"\xd0\xcf\x11\xe0", 0, "legacy MS Office document"),
    (b"<svg", 0, "SVG image"), (b"<?xml", 0, "XML document"), (b"<!DOCTYPE html", 0, "HTML document"),
    (b"<html", 0, "HTML document"), (b"{", 0, "JSON/text data"),
)
# Valid BMP DIB header sizes; "BM" alone is too weak a signature (plain text can start with it).
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# Walking a TIFF's page chain is bounded so a crafted file with millions of pages cannot stall a worker.
_TIFF_PAGE_SCAN_FACTOR = 10
# pdfium is not thread-safe, even across different documents.
_PDFIUM_LOCK = threading.Lock()
# Header resolutions outside this range are placeholders or damage, not scans.
_MIN_DPI, _MAX_DPI = 50.0, 2400.0


class DocumentLimits(BaseModel):
    """Upper bounds applied to every uploaded document."""

    model_config = ConfigDict(frozen=True)

    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0, description="Largest accepted upload, in bytes.")
    max_pages: int = Field(default=500, gt=0, description="Most pages that may be selected for processing.")
    max_pixels: int = Field(default=60_000_000, gt=0,
                            description="Largest page in pixels (width x height; PDFs as rendered).")
    pdf_dpi: int = Field(default=150, ge=36, le=600, description="Resolution PDF pages are rendered at.")


def sniff_format(data: bytes) -> DocumentFormat:
    """The document format from its leading bytes; raises UnsupportedMediaType naming what it saw."""
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    # The PDF spec lets readers accept a header anywhere in the first 1024 bytes (e.g. after a mail header).
    if b"%PDF-" in data[:1024]:
        return "pdf"
    raise UnsupportedMediaType(f"unsupported document type: {_describe(data)}; "
                               "accepted: PNG, JPEG, WebP, BMP, TIFF, PDF")


def _describe(data: bytes) -> str:
    if not data:
        return "the upload is empty"
    stripped = data.lstrip()
    for sig, offset, name in _OTHER_SIGNATURES:
        source = stripped if offset == 0 else data
        if source[offset:offset + len(sig)].lower() == sig.lower():
            return f"looks like {name} (first bytes {data[:8].hex(' ')})"
    return f"unrecognised signature (first bytes {data[:8].hex(' ')})"


class LoadedDocument:
    """A validated document; pages are decoded only when asked for, one at a time.

    `page_count` and indices passed to `render_page` refer to the selected pages (after `page_range`);
    `page_numbers[i]` is the 1-based number of selected page i in the original file.
    """

    def __init__(self, data: bytes, fmt: DocumentFormat, limits: DocumentLimits, total_pages: int,
                 page_numbers: list[int]) -> None:
        self._data = data
        self.format: DocumentFormat = fmt
        self.limits = limits
        self.total_pages = total_pages
        self.page_numbers = page_numbers

    @property
    def page_count(self) -> int:
        return len(self.page_numbers)

    def render_page(self, index: int) -> Image.Image:
        """Selected page `index` (0-based) as an RGB image; PDFs are rendered at `limits.pdf_dpi`."""
        number = self._number(index)
        if self.format == "pdf":
            return _render_pdf_page(self._data, number - 1, self.limits)
        return _decode_raster_page(self._data, self.format, number - 1, self.limits)

    def page_dpi(self, index: int) -> float | None:
        """Resolution of selected page `index`: the render dpi for PDFs; for images the file's own dpi when it
        states a plausible one (many cameras and converters write 72 or 96 regardless), else None."""
        number = self._number(index)
        if self.format == "pdf":
            return float(self.limits.pdf_dpi)
        with _open_image(self._data, self.format) as image:
            if number > 1:
                try:
                    image.seek(number - 1)
                except Exception:
                    return None
            return _stated_dpi(image)

    def text_layer(self, index: int, dpi: float | None = None) -> TextLayerPage | None:
        """The PDF text layer of selected page `index`, boxes in pixels of the page rendered at `dpi` (default:
        `limits.pdf_dpi`, as `render_page` draws it); None for images."""
        number = self._number(index)
        if self.format != "pdf":
            return None
        from maoocr.ocr.text_layer import read_text_layer  # the OCR package builds on this module

        return read_text_layer(self._data, number - 1, float(dpi or self.limits.pdf_dpi))

    def _number(self, index: int) -> int:
        if not 0 <= index < self.page_count:
            raise IndexError(f"page index {index} out of range (document has {self.page_count} selected pages)")
        return self.page_numbers[index]

    def iter_pages(self) -> Iterator[Image.Image]:
        for index in range(self.page_count):
            yield self.render_page(index)

    def __repr__(self) -> str:
        return (f"LoadedDocument(format={self.format!r}, page_count={self.page_count}, "
                f"total_pages={self.total_pages}, bytes={len(self._data)})")


def load_document(data: bytes, limits: DocumentLimits | None = None,
                  page_range: tuple[int, int] | None = None) -> LoadedDocument:
    """Validate `data` and return a lazily rendered document.

    `page_range` is (first, last), 1-based and inclusive, as a user would write "pages 2-5"; `last` beyond the
    end of the document is clamped. Raises PayloadTooLarge, UnsupportedMediaType, UnprocessableDocument or
    InvalidRequest (bad range).
    """
    limits = limits or DocumentLimits()
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"document is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    fmt = sniff_format(data)
    _set_pil_pixel_guard(limits)
    if fmt == "pdf":
        total, page_sizes = _inspect_pdf(data, limits)
    else:
        total, page_sizes = _inspect_raster(data, fmt, limits)
    numbers = _select_pages(total, page_range)
    if len(numbers) > limits.max_pages:
        raise PayloadTooLarge(f"{len(numbers)} pages selected; the limit is {limits.max_pages} pages")
    for number in numbers:
        # Page sizes are known before any decoding (headers / PDF media boxes): refuse oversized pages up front.
        if number - 1 < len(page_sizes):
            _check_pixels(*page_sizes[number - 1], limits, number)
    return LoadedDocument(data, fmt, limits, total, numbers)


def _select_pages(total: int, page_range: tuple[int, int] | None) -> list[int]:
    if page_range is None:
        return list(range(1, total + 1))
    first, last = page_range
    if first < 1 or last < first:
        raise InvalidRequest(f"invalid page range {first}-{last}: pages are numbered from 1 and first <= last")
    if first > total:
        raise InvalidRequest(f"page range {first}-{last} starts after the last page ({total})")
    return list(range(first, min(last, total) + 1))


def _check_pixels(width: int, height: int, limits: DocumentLimits, number: int) -> None:
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(f"page {number} is {width}x{height} = {width * height} pixels; "
                              f"the limit is {limits.max_pixels} pixels per page")


def _set_pil_pixel_guard(limits: DocumentLimits) -> None:
    # Process-wide PIL setting; the explicit per-page check above is the authoritative one, this is a backstop
    # for decoders whose real size differs from the header we checked.
    Image.MAX_IMAGE_PIXELS = limits.max_pixels


def _open_image(data: bytes, fmt: DocumentFormat) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnprocessableDocument(f"{fmt.upper()} header is corrupt: the decoder cannot parse it") from exc
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, struct.error)
        raise UnprocessableDocument(f"cannot read {fmt.upper()} header: {exc}") from exc
    return image


def _inspect_raster(data: bytes, fmt: DocumentFormat, limits: DocumentLimits) -> tuple[int, list[tuple[int, int]]]:
    image = _open_image(data, fmt)
    with image:
        if fmt == "tiff":
            return _inspect_tiff(image, data, limits)
        _check_pixels(*image.size, limits, 1)
        # A single page is decoded once here so truncated or corrupt files are refused at upload time.
        _decode(image, fmt)
        return 1, [image.size]


def _inspect_tiff(image: Image.Image, data: bytes, limits: DocumentLimits) -> tuple[int, list[tuple[int, int]]]:
    """Walk the page chain without decoding pixels: page sizes, and whether every strip lies inside the file."""
    sizes: list[tuple[int, int]] = []
    scan_cap = limits.max_pages * _TIFF_PAGE_SCAN_FACTOR
    while True:
        sizes.append(image.size)
        _check_tiff_strips(image, len(data), len(sizes))
        if len(sizes) > scan_cap:
            raise PayloadTooLarge(f"TIFF has more than {scan_cap} pages; the limit is {limits.max_pages} pages")
        try:
            image.seek(len(sizes))
        except EOFError:
            return len(sizes), sizes
        except Exception as exc:
            raise UnprocessableDocument(f"TIFF page {len(sizes) + 1} is unreadable (truncated?): {exc}") from exc


def _check_tiff_strips(image: Image.Image, size: int, number: int) -> None:
    tags = getattr(image, "tag_v2", {})
    offsets = tags.get(273) or tags.get(324)  # StripOffsets or TileOffsets
    counts = tags.get(279) or tags.get(325)  # StripByteCounts or TileByteCounts
    if not offsets or not counts:
        raise UnprocessableDocument(f"TIFF page {number} has no image data")
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    end = max(int(o) + int(c) for o, c in zip(offsets, counts, strict=False))
    if end > size:
        raise UnprocessableDocument(f"TIFF page {number} is truncated: its image data ends at byte {end} "
                                    f"but the file has {size} bytes")


def _stated_dpi(image: Image.Image) -> float | None:
    """The dpi in an image's header (TIFF resolution, PNG pHYs, JFIF/EXIF), when it gives a page size between
    1 and 20 inches on the long side; the mean when x and y differ (fax modes)."""
    dpi = image.info.get("dpi")
    if isinstance(dpi, (int, float)):
        dpi = (dpi, dpi)
    try:
        x, y = (float(v) for v in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    value = (x + y) / 2.0
    if not (math.isfinite(value) and _MIN_DPI <= value <= _MAX_DPI):
        return None
    long_side_in = max(image.size) / value
    return round(value, 2) if 1.0 <= long_side_in <= 20.0 else None


def _decode(image: Image.Image, fmt: str, number: int = 1) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"page {number} is too large to decode safely: {exc}") from exc
    except Exception as exc:
        raise UnprocessableDocument(f"{fmt.upper()} page {number} is corrupt or truncated: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and float scans: rescale to 8 bits rather than clipping everything to white.
        return ImageOps.autocontrast(image.convert("F").point(lambda v: v / 256.0).convert("L")).convert("RGB")
    return paper_rgb(image)


def paper_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of a PIL image (the image itself when it is RGB already). Transparent areas become white paper,
    not black, so dark text on them stays readable."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _decode_raster_page(data: bytes, fmt: DocumentFormat, frame: int, limits: DocumentLimits) -> Image.Image:
    _set_pil_pixel_guard(limits)
    with _open_image(data, fmt) as image:
        if frame:
            try:
                image.seek(frame)
            except Exception as exc:
                raise UnprocessableDocument(f"{fmt.upper()} page {frame + 1} is unreadable: {exc}") from exc
        _check_pixels(*image.size, limits, frame + 1)
        _decode(image, fmt, frame + 1)
        try:
            return _to_rgb(image)
        except Exception as exc:
            raise UnprocessableDocument(f"{fmt.upper()} page {frame + 1} cannot be converted to RGB: {exc}") from exc


def _pdf_pixels(width_pt: float, height_pt: float, dpi: int) -> tuple[int, int]:
    # pdfium rounds bitmap sizes up, so the pixel check does too.
    scale = dpi / 72.0
    return max(1, math.ceil(width_pt * scale - 1e-6)), max(1, math.ceil(height_pt * scale - 1e-6))


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    # pdfium silently rebuilds a broken cross-reference table, so a cut-off upload could open with pages missing.
    if b"%%EOF" not in data[-2048:]:
        raise UnprocessableDocument("PDF is truncated: no %%EOF marker at the end of the file")
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise UnprocessableDocument("PDF is encrypted and needs a password") from exc
        raise UnprocessableDocument(f"PDF cannot be opened: {exc}") from exc


def _inspect_pdf(data: bytes, limits: DocumentLimits) -> tuple[int, list[tuple[int, int]]]:
    with _PDFIUM_LOCK:
        pdf = _open_pdf(data)
        try:
            total = len(pdf)
            if total == 0:
                raise UnprocessableDocument("PDF has no pages")
            if total > limits.max_pages * _TIFF_PAGE_SCAN_FACTOR:
                raise PayloadTooLarge(f"PDF has {total} pages; the limit is {limits.max_pages} pages")
            sizes = []
            for i in range(total):
                try:
                    width_pt, height_pt = pdf.get_page_size(i)
                    sizes.append(_pdf_pixels(width_pt, height_pt, limits.pdf_dpi))
                except pdfium.PdfiumError as exc:
                    raise UnprocessableDocument(f"PDF page {i + 1} is unreadable: {exc}") from exc
            return total, sizes
        finally:
            pdf.close()


def _render_pdf_page(data: bytes, index: int, limits: DocumentLimits) -> Image.Image:
    with _PDFIUM_LOCK:
        pdf = _open_pdf(data)
        try:
            page = pdf[index]
            try:
                width_pt, height_pt = page.get_size()
                width, height = _pdf_pixels(width_pt, height_pt, limits.pdf_dpi)
                # Re-checked here because a worker may render with different limits than the upload was checked with.
                _check_pixels(width, height, limits, index + 1)
                bitmap = page.render(scale=limits.pdf_dpi / 72.0, fill_color=(255, 255, 255, 255))
                return bitmap.to_pil().convert("RGB")
            finally:
                page.close()
        except pdfium.PdfiumError as exc:
            raise UnprocessableDocument(f"PDF page {index + 1} cannot be rendered: {exc}") from exc
        finally:
            pdf.close()
