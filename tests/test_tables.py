"""Table regions to grids of cells: tables rendered at ~200 dpi with known cells, read by the real OCR engine and the
SLANet structure model; the alignment fallback on born-digital word boxes; markdown and HTML output."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageDraw, ImageFont

from devtools import docgen
from maoocr.ocr import OCREngineUnavailable, get_ocr_engine
from maoocr.ocr.tables import TableRecognizer, get_table_recognizer, table_from_words, to_html, to_markdown
from maoocr.ocr.types import Table, TableCell

FONT_PX = 28  # 10 pt at 200 dpi
MIN_CELLS_RIGHT = 0.9

PRICES = [["Item", "Qty", "Price", "Total"],
          ["Apples", "12", "0.45", "5.40"],
          ["Bananas", "30", "0.25", "7.50"],
          ["Cherries", "4", "3.10", "12.40"],
          ["Dates", "7", "2.05", "14.35"],
          ["Elderberries", "15", "1.75", "26.25"]]
# None: the slot is covered by the spanning cell to its left.
REVENUE = [["Region", "Quarterly revenue", None, None],
           ["", "Q1", "Q2", "Q3"],
           ["North", "1,204", "1,350", "1,498"],
           ["South", "987", "1,020", "1,113"],
           ["East", "2,310", "2,290", "2,405"],
           ["West", "645", "702", "731"]]

Truth = dict[tuple[int, int], str]
Words = list[tuple[str, tuple[float, float, float, float]]]


@pytest.fixture(scope="module", autouse=True)
def _fonts() -> None:
    docgen.require_fonts()


@pytest.fixture(scope="module")
def recognizer() -> TableRecognizer:
    return get_table_recognizer()


@pytest.fixture(scope="module")
def ocr():
    return get_ocr_engine("rapidocr", profile="accurate")


def render_table(grid: list[list[str | None]], *, ruled: bool, pad: int = 22) -> tuple[Image.Image, Truth, Words]:
    """The table as a scan would show it: a header row, numbers right-aligned, text left-aligned, a cell followed
    by None spans those columns. Returns the image, the text of each cell, and each word's exact box."""
    font = ImageFont.truetype(docgen.latin_font_path(), FONT_PX)
    rows, cols = len(grid), len(grid[0])

    def span(r: int, c: int) -> int:
        n = 1
        while c + n < cols and grid[r][c + n] is None:
            n += 1
        return n

    widths = [0] * cols
    for r, row in enumerate(grid):
        for c, text in enumerate(row):
            if text is not None and span(r, c) == 1:
                widths[c] = max(widths[c], int(font.getlength(text)) + 2 * pad)
    xs = [30]
    for width in widths:
        xs.append(xs[-1] + width)
    row_height = FONT_PX + 2 * pad
    ys = [30 + r * row_height for r in range(rows + 1)]
    image = Image.new("RGB", (xs[-1] + 30, ys[-1] + 30), "white")
    draw = ImageDraw.Draw(image)
    truth: Truth = {}
    words: Words = []
    for r, row in enumerate(grid):
        for c, text in enumerate(row):
            if text is None:
                continue
            x0, x1, y0 = xs[c], xs[c + span(r, c)], ys[r]
            truth[(r, c)] = text
            width = font.getlength(text)
            numeric = text.replace(",", "").replace(".", "").isdigit()
            x = (x0 + x1 - width) / 2 if r == 0 or span(r, c) > 1 else x1 - pad - width if numeric else x0 + pad
            y = y0 + pad
            draw.text((x, y), text, font=font, fill="black")
            offset = 0.0
            for word in text.split():
                start = text.index(word, int(offset))
                left = x + font.getlength(text[:start])
                words.append((word, (left, y, left + font.getlength(word), y + FONT_PX)))
                offset = start + len(word)
            if ruled:
                draw.rectangle((x0, y0, x1, ys[r + 1]), outline="black", width=2)
    if not ruled:  # booktabs style: rules above and below the header and at the bottom only
        for y in (ys[0], ys[1], ys[-1]):
            draw.line((xs[0], y, xs[-1], y), fill="black", width=2)
    return image, truth, words


def ocr_words(ocr, image: Image.Image) -> Words:
    words = []
    for line in ocr.recognize(image).lines:
        xs, ys = [p[0] for p in line.polygon], [p[1] for p in line.polygon]
        words.append((line.text, (min(xs), min(ys), max(xs), max(ys))))
    return words


def cells_right(table: Table, truth: Truth) -> float:
    got = {(cell.row, cell.col): " ".join(cell.text.split()) for cell in table.cells}
    return sum(got.get(key) == text for key, text in truth.items()) / len(truth)


def markdown_shape(markdown: str) -> tuple[int, int]:
    lines = markdown.splitlines()
    assert lines[1].replace(" ", "").strip("|").split("|") == ["---"] * (lines[1].count("|") - 1)
    body = [line for i, line in enumerate(lines) if i != 1]
    widths = {line.replace("\\|", "").count("|") - 1 for line in body}
    assert len(widths) == 1, markdown
    return len(body), widths.pop()


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "unruled"])
def test_scanned_price_table_reads_cell_by_cell(recognizer, ocr, ruled) -> None:
    image, truth, _ = render_table(PRICES, ruled=ruled)
    table = recognizer.recognize(image, ocr_words(ocr, image))
    assert table.source == "slanet"
    assert (table.rows, table.cols) == (6, 4)
    assert cells_right(table, truth) >= MIN_CELLS_RIGHT
    assert markdown_shape(table.markdown) == (6, 4)
    assert table.markdown.splitlines()[0] == "| Item | Qty | Price | Total |"
    assert "colspan" not in table.html and table.html.count("<tr>") == 6 and table.html.count("<td") == 24
    # Cell boxes tile the crop: the price column lies right of the quantity column, row 2 below row 1.
    at = {(cell.row, cell.col): cell.box for cell in table.cells}
    assert at[(1, 1)][2] <= at[(1, 2)][0] + 1 and at[(1, 0)][3] <= at[(2, 0)][1] + 1


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "unruled"])
def test_spanning_header_becomes_one_cell_with_colspan(recognizer, ocr, ruled) -> None:
    image, truth, _ = render_table(REVENUE, ruled=ruled)
    table = recognizer.recognize(image, ocr_words(ocr, image))
    assert table.source == "slanet"
    assert cells_right(table, truth) >= MIN_CELLS_RIGHT
    header = next(cell for cell in table.cells if cell.text == "Quarterly revenue")
    assert (header.row, header.col, header.col_span) == (0, 1, 3)
    assert '<td colspan="3">Quarterly revenue</td>' in table.html
    assert table.markdown == table.html  # a pipe table cannot span


@pytest.mark.parametrize(("grid", "ruled"), [(PRICES, True), (REVENUE, False)], ids=["prices-ruled", "revenue-unruled"])
def test_grey_noisy_scan_of_a_table_still_reads(recognizer, ocr, grid, ruled) -> None:
    image, truth, _ = render_table(grid, ruled=ruled)
    scan = docgen.noisy(docgen.Page(image, [])).image  # low contrast, blur, noise: SLANet invents rows on it as is
    table = recognizer.recognize(scan, ocr_words(ocr, scan))
    assert table.source == "slanet"
    assert (table.rows, table.cols) == (6, 4)
    assert cells_right(table, truth) >= MIN_CELLS_RIGHT, table.markdown


def test_a_line_across_two_cells_is_split_at_its_spaces(recognizer) -> None:
    grid = [["Name", "City", "Code"], ["Ann Lee", "New York", "NY"], ["Bo Chen", "Los Angeles", "LA"],
            ["Cy Diaz", "San Diego", "SD"]]
    image, truth, words = render_table(grid, ruled=False, pad=14)
    # As an OCR engine reading an unruled table often does: the first two cells of each body row as one line.
    lines: Words = []
    for row in grid:
        row_words = [w for w in words if w[0] in " ".join(row).split()]
        first = [w for w in row_words if w[0] in f"{row[0]} {row[1]}".split()]
        box = (min(w[1][0] for w in first), min(w[1][1] for w in first), max(w[1][2] for w in first),
               max(w[1][3] for w in first))
        lines.append((f"{row[0]} {row[1]}", box))
        lines += [w for w in row_words if w not in first]
    table = recognizer.recognize(image, lines)
    assert table.source == "slanet"
    assert cells_right(table, truth) == 1.0, table.markdown


def test_text_layer_words_give_the_exact_grid_without_the_model() -> None:
    grid = [["Item", "Qty", "Unit price", "Total"]] + [[f"Row {i}", str(i * 3), f"{i * 1.25:.2f}", f"{i * 3.75:.2f}"]
                                                      for i in range(1, 7)]
    _, truth, words = render_table(grid, ruled=False)
    table = table_from_words(words)
    assert table.source == "alignment"
    assert (table.rows, table.cols) == (7, 4)
    assert cells_right(table, truth) == 1.0, table.markdown
    assert markdown_shape(table.markdown) == (7, 4)


def test_text_layer_spanning_header_is_found_by_alignment() -> None:
    _, truth, words = render_table(REVENUE, ruled=True)
    table = table_from_words(words)
    assert cells_right(table, truth) == 1.0, table.markdown
    assert '<td colspan="3">Quarterly revenue</td>' in table.html


def test_a_grid_invented_on_a_blank_crop_is_rejected_for_the_words_alignment(recognizer) -> None:
    _, truth, words = render_table(PRICES, ruled=False)
    blank = Image.new("RGB", (700, 480), "white")  # the model still "sees" a table here
    table = recognizer.recognize(blank, words)
    assert table.source.startswith("alignment: ")
    assert cells_right(table, truth) == 1.0


def test_no_words_gives_an_empty_table(recognizer) -> None:
    table = recognizer.recognize(Image.new("RGB", (300, 200), "white"), [])
    assert (table.rows, table.cols, table.cells, table.markdown) == (0, 0, [], "")
    assert table_from_words([]).rows == 0


def test_markdown_and_html_escape_cell_text() -> None:
    cells = [TableCell(row=0, col=0, text="a|b"), TableCell(row=0, col=1, text="x<y & z"),
             TableCell(row=1, col=0, text="1"), TableCell(row=1, col=1, text="2")]
    table = Table(rows=2, cols=2, cells=cells, markdown="", html="")
    assert to_markdown(table) == "| a\\|b | x&lt;y & z |\n| --- | --- |\n| 1 | 2 |"
    assert to_html(table) == "<table><tr><td>a|b</td><td>x&lt;y &amp; z</td></tr><tr><td>1</td><td>2</td></tr></table>"


def test_missing_model_file_is_a_clear_error_not_a_download(tmp_path) -> None:
    with pytest.raises(OCREngineUnavailable, match="missing"):
        TableRecognizer(model_path=tmp_path / "slanet-1m.onnx")


def test_one_recognizer_serves_several_threads(recognizer) -> None:
    image, truth, words = render_table(PRICES, ruled=True)
    with ThreadPoolExecutor(3) as pool:
        tables = list(pool.map(lambda _: recognizer.recognize(image, words), range(3)))
    assert all(t == tables[0] for t in tables) and cells_right(tables[0], truth) == 1.0
