"""OCR engines on generated pages with known text: accuracy (CER), orientation, reading order, registry.

CER thresholds (edit distance / reference length, whitespace collapsed, NFKC), stated per case below. They are
well above what the packaged PP-OCRv6 models measure on these pages (0.00-0.01) so that they catch real
regressions (a wrong rotation or interleaved columns gives CER > 0.3) without flaking on a changed character.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageDraw

from devtools import docgen
from maoocr.documents import DocumentLimits, load_document
from maoocr.errors import InvalidRequest, MaoOCRError
from maoocr.ocr import (
    OCREngine,
    OCREngineUnavailable,
    PageOCR,
    cer,
    create_ocr_engine,
    edit_distance,
    get_ocr_engine,
    register_ocr_engine,
)
from maoocr.ocr.geometry import bounding_box, rotate_clockwise, upright_to_input
from maoocr.ocr.rapid_engine import RapidOCREngine, packaged_model_dir
from maoocr.ocr.reading_order import order_lines
from maoocr.pipeline.complexity import analyze_page

CER_CLEAN_EN = 0.02
CER_CLEAN_ZH = 0.05
CER_NOISY_EN = 0.08
CER_NOISY_ZH = 0.10
CER_ROTATED = 0.03  # rotated clean English / Chinese, after orientation correction


@pytest.fixture(scope="module", autouse=True)
def _fonts() -> None:
    docgen.require_fonts(cjk=True)


@pytest.fixture(scope="module")
def engine() -> OCREngine:
    return get_ocr_engine("rapidocr")


@pytest.fixture(scope="module")
def english() -> docgen.Page:
    return docgen.english_page()


@pytest.fixture(scope="module")
def chinese() -> docgen.Page:
    return docgen.chinese_page()


def _check(engine: OCREngine, page: docgen.Page, limit: float, *, spaces: bool = True) -> PageOCR:
    result = engine.recognize(page.image)
    rate = cer(page.text, result.text, keep_spaces=spaces)
    print(f"CER={rate:.4f} (limit {limit}) orientation={result.orientation} {result.timings_ms}")
    assert rate <= limit, f"CER {rate:.3f} > {limit}\n--- expected\n{page.text}\n--- got\n{result.text}"
    return result


# -- accuracy ---------------------------------------------------------------------------------------------------

def test_clean_english(engine: OCREngine, english: docgen.Page) -> None:
    result = _check(engine, english, CER_CLEAN_EN)
    assert result.engine == "rapidocr" and result.orientation == 0
    assert (result.width, result.height) == english.image.size
    assert len(result.lines) == len(english.lines)
    assert all(0.5 <= line.confidence <= 1.0 for line in result.lines)
    # Paragraphs are separate blocks: title + 3 paragraphs.
    assert len({line.block for line in result.lines}) == 4
    assert {"orientation", "det", "rec", "total"} <= set(result.timings_ms)


def test_clean_chinese(engine: OCREngine, chinese: docgen.Page) -> None:
    _check(engine, chinese, CER_CLEAN_ZH, spaces=False)


def test_noisy_english_scan(engine: OCREngine, english: docgen.Page) -> None:
    _check(engine, docgen.noisy(english), CER_NOISY_EN)


def test_noisy_chinese_scan(engine: OCREngine, chinese: docgen.Page) -> None:
    _check(engine, docgen.noisy(chinese), CER_NOISY_ZH, spaces=False)


def test_accurate_profile(english: docgen.Page) -> None:
    accurate = get_ocr_engine("rapidocr", profile="accurate")
    assert isinstance(accurate, RapidOCREngine) and accurate.profile == "accurate"
    _check(accurate, docgen.noisy(english), CER_NOISY_EN)
    # A half-size page is enlarged before detection; polygons must still come back in the input's pixels.
    small = english.image.resize((english.image.width // 2, english.image.height // 2), Image.Resampling.LANCZOS)
    result = _check(accurate, docgen.Page(small, english.lines), CER_CLEAN_EN)
    right = max(bounding_box(line.polygon)[2] for line in result.lines)
    bottom = max(bounding_box(line.polygon)[3] for line in result.lines)
    assert small.width * 0.8 < right <= small.width and small.height * 0.7 < bottom <= small.height


def test_pdf_page_end_to_end(engine: OCREngine) -> None:
    pages = docgen.numbered_pages(3)
    doc = load_document(docgen.pdf_bytes(pages), DocumentLimits(), page_range=(2, 2))
    result = engine.recognize(doc.render_page(0))
    assert cer(pages[1].text, result.text) <= CER_CLEAN_EN, result.text


# -- orientation ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_english_is_corrected(engine: OCREngine, english: docgen.Page, degrees: int) -> None:
    page = docgen.rotated(english, degrees)
    result = _check(engine, page, CER_ROTATED)
    assert result.orientation == degrees
    assert (result.width, result.height) == page.image.size
    # Polygons are in the coordinates of the rotated input: sideways lines are tall there, and inside it.
    for line in result.lines:
        x0, y0, x1, y1 = bounding_box(line.polygon)
        assert x0 >= -2 and x1 <= page.image.width + 2 and y0 >= -2 and y1 <= page.image.height + 2
        if degrees in (90, 270) and len(line.text) > 5:
            assert y1 - y0 > x1 - x0, line


@pytest.mark.parametrize(("turn", "clockwise_fix", "counter_clockwise_turn"), [(90, 90, 90), (-90, 270, 270),
                                                                            (180, 180, 180)])
def test_both_orientation_reports_follow_their_docs(engine: OCREngine, english: docgen.Page, turn: int,
                                                    clockwise_fix: int, counter_clockwise_turn: int) -> None:
    """A page turned by `turn` (PIL: positive is counter-clockwise). PageOCR.orientation is the clockwise turn that
    reads it upright; PageFeatures.orientation is the counter-clockwise turn of the upright page."""
    turned = english.image.rotate(turn, expand=True, fillcolor="white")
    result = engine.recognize(turned)
    features = analyze_page(turned).features
    assert (result.orientation, features.orientation) == (clockwise_fix, counter_clockwise_turn)
    # Each report undoes the turn the way its doc says.
    upright = rotate_clockwise(turned, result.orientation)
    assert upright.tobytes() == english.image.convert(upright.mode).tobytes()
    assert turned.rotate(-features.orientation, expand=True).tobytes() == upright.tobytes()


@pytest.mark.parametrize("degrees", [90, 180])
def test_rotated_chinese_is_corrected(engine: OCREngine, chinese: docgen.Page, degrees: int) -> None:
    result = _check(engine, docgen.rotated(chinese, degrees), CER_ROTATED, spaces=False)
    assert result.orientation == degrees


def test_blank_page_has_no_lines(engine: OCREngine) -> None:
    result = engine.recognize(Image.new("RGB", (800, 600), "white"))
    assert result.lines == [] and result.text == "" and result.orientation == 0


# -- reading order ----------------------------------------------------------------------------------------------

def _match_lines(result: PageOCR, page: docgen.Page) -> list[int]:
    """For each recognised line, the index of the ground-truth line it reads as (best CER, which must be low)."""
    matched = []
    for line in result.lines:
        rates = [cer(truth, line.text) for truth in page.lines]
        best = min(range(len(rates)), key=rates.__getitem__)
        assert rates[best] <= 0.2, f"unmatched line {line.text!r}"
        matched.append(best)
    return matched


@pytest.mark.parametrize("degrees", [0, 90])
def test_two_columns_read_column_by_column(engine: OCREngine, degrees: int) -> None:
    page = docgen.two_column_page()
    result = engine.recognize(docgen.rotated(page, degrees).image if degrees else page.image)
    assert result.orientation == degrees
    order = _match_lines(result, page)
    assert sorted(order) == list(range(len(page.lines))), "every line read exactly once"
    columns = [page.blocks[i] for i in order]
    assert columns[0] == 0, "the full-width title comes first"
    last_left = max(k for k, c in enumerate(columns) if c == 1)
    first_right = min(k for k, c in enumerate(columns) if c == 2)
    assert last_left < first_right, f"columns interleaved: {columns}"
    assert order == sorted(order), "each column top to bottom"
    # No block mixes the two columns.
    for block in {line.block for line in result.lines}:
        assert len({columns[k] for k, line in enumerate(result.lines) if line.block == block}) == 1
    assert cer(page.text, result.text) <= CER_CLEAN_EN


def _boxes_for(rows: list[tuple[float, list[tuple[float, float]]]], height: float = 20.0) -> list:
    """Boxes from (top, [(x0, x1), ...]) rows."""
    return [(x0, top, x1, top + height) for top, spans in rows for x0, x1 in spans]


def test_reading_order_three_columns_with_title_and_uneven_lengths() -> None:
    left, mid, right = (0, 180), (240, 420), (480, 660)
    rows = [(0, [(100, 560)])]  # centred title crossing both gutters
    rows += [(40 + 30 * r, [left, mid, right]) for r in range(3)]
    rows += [(130, [left, right])]  # the middle column is empty on this row
    rows += [(160, [left]), (190, [left])]  # the left column is longer
    boxes = _boxes_for(rows)
    blocks = order_lines(boxes)
    flat = [i for block in blocks for i in block]
    assert sorted(flat) == list(range(len(boxes)))
    column = {i: (0 if b[2] <= 200 else 1 if b[2] <= 440 else 2) for i, b in enumerate(boxes)}
    column[0] = -1
    assert [column[i] for i in flat] == sorted(column[i] for i in flat), [column[i] for i in flat]
    for c in (0, 1, 2):
        tops = [boxes[i][1] for i in flat if column[i] == c]
        assert tops == sorted(tops)


def test_reading_order_sections_and_split_rows() -> None:
    rows = [(0, [(0, 300), (360, 660)]), (30, [(0, 300), (360, 660)]),  # two-column section
            (70, [(0, 660)]),                                        # full-width paragraph line
            (100, [(0, 300), (360, 660)]), (130, [(0, 300), (360, 660)]),  # second two-column section
            (170, [(0, 200), (240, 660)])]  # one line the detector split in two: stays in row order
    boxes = _boxes_for(rows)
    flat = [i for block in order_lines(boxes) for i in block]
    assert flat == [0, 2, 1, 3, 4, 5, 7, 6, 8, 9, 10]


def test_reading_order_single_column_is_top_to_bottom() -> None:
    boxes = [(10, 100 - 30 * i, 500 - 7 * i, 120 - 30 * i) for i in range(4)]  # given bottom-up
    assert [i for block in order_lines(boxes) for i in block] == [3, 2, 1, 0]
    assert order_lines([]) == []


# -- geometry, metrics ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_upright_points_map_back_to_input(degrees: int) -> None:
    image = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(image).rectangle((40, 30, 59, 49), fill=0)  # a 20x20 mark at x 40-60, y 30-50
    upright = rotate_clockwise(image, degrees)
    if degrees in (90, 270):
        assert upright.size == (200, 300)
    x0, y0, x1, y1 = Image.eval(upright, lambda v: 255 - v).getbbox()
    mapped = upright_to_input([(x0, y0), (x1, y1)], degrees, image.size)
    assert bounding_box(mapped) == (40.0, 30.0, 60.0, 50.0)


def test_cer_and_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert cer("hello  world\n", "hello world") == 0.0
    assert cer("abcd", "abed") == 0.25
    assert cer("文字，识别", "文字,识 别", keep_spaces=False) == 0.0


# -- registry, offline, optional backends ----------------------------------------------------------------------

def test_registry_unknown_engine_is_400() -> None:
    with pytest.raises(InvalidRequest, match="unknown OCR engine 'tesseract'"):
        create_ocr_engine("tesseract")
    with pytest.raises(InvalidRequest, match="profile"):
        create_ocr_engine("rapidocr", profile="turbo")


def test_cached_engine_is_created_once_under_concurrency() -> None:
    created = []
    barrier = threading.Barrier(8)

    class Counting(OCREngine):
        name = "counting"

        def __init__(self) -> None:
            created.append(self)

        def recognize(self, image: Image.Image) -> PageOCR:
            return PageOCR(lines=[], text="", engine=self.name)

    register_ocr_engine("counting-test", Counting)

    def get() -> OCREngine:
        barrier.wait()
        return get_ocr_engine("counting-test")

    with ThreadPoolExecutor(8) as pool:
        engines = list(pool.map(lambda _: get(), range(8)))
    assert len(created) == 1 and all(e is created[0] for e in engines)


def test_rapidocr_runs_offline_from_packaged_models(monkeypatch: pytest.MonkeyPatch, english: docgen.Page) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    fresh = RapidOCREngine()  # a new instance loads every model again, with the network blocked
    assert all(path.parent == packaged_model_dir() for path in fresh.model_paths.values())
    assert cer(english.text, fresh.recognize(english.image).text) <= CER_CLEAN_EN


def test_paddleocr_backend() -> None:
    try:
        paddle = create_ocr_engine("paddleocr")
    except OCREngineUnavailable as exc:
        # The error must say what is missing, and map to 503 like any unavailable service.
        assert exc.http_status == 503 and isinstance(exc, MaoOCRError)
        assert "paddle" in exc.message
        pytest.skip(f"paddleocr backend not available here: {exc.message}")
    page = docgen.english_page()
    result = paddle.recognize(docgen.rotated(page, 180).image)
    assert result.engine == "paddleocr" and result.orientation == 180
    assert cer(page.text, result.text) <= CER_CLEAN_EN
