"""Reading order over blocks and the page's text/markdown, on line boxes laid out as real pages are."""

from __future__ import annotations

from maoocr.ocr.layout import LayoutRegion
from maoocr.ocr.page_structure import structure_page
from maoocr.ocr.page_text import join_lines, list_items, page_markdown, page_text
from maoocr.ocr.types import Block, OCRLine

PAGE = (1240, 1754)  # A4 at 150 dpi
LINE = 24  # body line height
PITCH = 32


class Page:
    """Lines placed on a page; each remembers the label of the text it belongs to."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, float, float, float]] = []
        self.texts: list[str] = []
        self.labels: list[str] = []

    def column(self, label: str, x0: float, x1: float, y0: float, lines: int, height: float = LINE,
               text: str | None = None) -> float:
        y = y0
        for k in range(lines):
            self.boxes.append((x0, y, x1, y + height))
            self.texts.append(text or "the river carried fine sediment down to the sea")
            self.labels.append(label)
            y += height + PITCH - LINE
        return y

    def order(self, regions=()) -> list[str]:
        layout = structure_page(self.boxes, self.texts, list(regions), PAGE)
        return [self.labels[u.lines[0]] if u.lines else u.type for u in layout.units]

    def types(self, regions=()) -> dict[str, str]:
        layout = structure_page(self.boxes, self.texts, list(regions), PAGE)
        return {self.labels[u.lines[0]]: u.type for u in layout.units if u.lines}


def dedupe(labels: list[str]) -> list[str]:
    out: list[str] = []
    for label in labels:
        if not out or out[-1] != label:
            out.append(label)
    return out


def magazine() -> Page:
    """Running header, a big title over three unequal columns, a page number."""
    page = Page()
    page.column("header", 100, 500, 40, 1)
    page.column("title", 100, 1100, 140, 1, height=60)
    page.column("c1", 100, 470, 260, 40)
    page.column("c2", 500, 830, 260, 40)
    page.column("c3", 860, 1140, 260, 38)
    page.column("pageno", 600, 640, 1680, 1, text="14")
    return page


def test_three_unequal_columns_under_a_title_read_column_by_column():
    page = magazine()
    assert dedupe(page.order()) == ["header", "title", "c1", "c2", "c3", "pageno"]
    types = page.types()
    assert types["header"] == "header" and types["pageno"] == "page_number" and types["title"] == "title"
    assert structure_page(page.boxes, page.texts, [], PAGE).columns == 3


def test_a_layout_region_drawn_over_two_columns_does_not_interleave_them():
    page = magazine()
    wrong = LayoutRegion("text", (90, 250, 840, 1600), 0.9)
    order = dedupe(page.order([wrong]))
    assert order == ["header", "title", "c1", "c2", "c3", "pageno"]


def test_text_flows_around_a_photo_that_spans_two_columns():
    page = Page()
    page.column("c1", 100, 400, 100, 45)
    page.column("c2top", 430, 730, 100, 12)
    page.column("c3top", 760, 1060, 100, 12)
    page.column("c2low", 430, 730, 1000, 17)
    page.column("c3low", 760, 1060, 1000, 17)
    page.texts[-1] += " end."
    photo = LayoutRegion("figure", (430, 520, 1060, 960), 0.95)
    order = dedupe(page.order([photo]))
    text_order = [label for label in order if label != "figure"]
    assert text_order == ["c1", "c2top", "c2low", "c3top", "c3low"]
    assert "figure" in order


def test_articles_side_by_side_each_under_its_own_headline():
    page = Page()
    page.column("h1", 100, 760, 100, 1, height=50)
    page.column("a1", 100, 420, 180, 30)
    page.column("a2", 440, 760, 180, 30)
    page.column("h2", 800, 1140, 100, 2, height=50)
    page.column("b1", 800, 1140, 250, 26)
    page.column("h3", 100, 1140, 1200, 1, height=50)
    page.column("c1", 100, 600, 1280, 10)
    page.column("c2", 640, 1140, 1280, 10)
    assert dedupe(page.order()) == ["h1", "a1", "a2", "h2", "b1", "h3", "c1", "c2"]


def test_a_page_without_layout_is_one_column_of_paragraphs():
    page = Page()
    page.column("p1", 100, 1100, 100, 5)
    page.column("p2", 100, 1100, 320, 5)
    assert dedupe(page.order()) == ["p1", "p2"]
    assert structure_page([], [], [], PAGE).units == []


def test_a_title_at_the_top_is_not_taken_for_a_running_header():
    page = Page()
    page.column("big", 100, 1100, 60, 1, height=56)
    page.column("body", 100, 1100, 160, 30)
    assert page.types()["big"] == "title"


def test_hyphenation_is_undone_and_lists_keep_their_items():
    assert join_lines(["The sedi-", "ment settles in the delta"]) == "The sediment settles in the delta"
    assert join_lines(["Well-", "Known names stay"]) == "Well- Known names stay"
    assert join_lines(["光学字符", "识别"]) == "光学字符识别"
    assert list_items(["• first item that", "wraps over", "• second"]) == ["• first item that wraps over", "• second"]
    assert list_items(["1. one", "2. two"]) == ["1. one", "2. two"]
    assert list_items(["1984 was a year", "of change"]) is None


def test_running_elements_leave_text_and_markdown_unless_kept():
    blocks = [Block(index=0, type="header", box=(0, 0, 1, 1), text="THE OBSERVER"),
              Block(index=1, type="title", box=(0, 0, 1, 1), text="Rivers"),
              Block(index=2, type="text", box=(0, 0, 1, 1), text="Body text."),
              Block(index=3, type="page_number", box=(0, 0, 1, 1), text="14")]
    lines = [OCRLine(text=b.text, polygon=[(0, 0), (100, 0), (100, h), (0, h)], confidence=1.0, block=b.index)
             for b, h in zip(blocks, (20, 60, 20, 20), strict=True)]
    assert page_text(blocks) == "Rivers\n\nBody text."
    assert page_text(blocks, keep_running=True) == "THE OBSERVER\n\nRivers\n\nBody text.\n\n14"
    assert page_markdown(blocks, lines) == "# Rivers\n\nBody text."
    assert "THE OBSERVER" in page_markdown(blocks, lines, keep_running=True)


def test_a_region_drawn_over_two_columns_the_model_also_found_gives_way_to_them():
    page = magazine()
    regions = [LayoutRegion("text", (90, 250, 840, 1600), 0.9), LayoutRegion("text", (95, 255, 475, 1590), 0.6),
               LayoutRegion("text", (495, 255, 835, 1590), 0.5)]
    layout = structure_page(page.boxes, page.texts, regions, PAGE)
    column_units = [u for u in layout.units if page.labels[u.lines[0]] in ("c1", "c2")]
    assert {u.region.box for u in column_units} == {regions[1].box, regions[2].box}


def test_a_table_region_over_prose_is_not_a_table():
    page = magazine()
    for k, label in enumerate(page.labels):
        if label in ("c1", "c2"):
            page.texts[k] = "the river carried sediment down to the sea"
    table = LayoutRegion("table", (90, 250, 840, 1600), 0.95)
    types = {u.type for u in structure_page(page.boxes, page.texts, [table], PAGE).units}
    assert "table" not in types
    figures = Page()
    figures.column("rows", 100, 900, 300, 8, text="Lindenfield 34.7 13.55 0.12 14")
    kept = structure_page(figures.boxes, figures.texts, [LayoutRegion("table", (90, 290, 910, 600), 0.9)], PAGE)
    assert [u.type for u in kept.units] == ["table"]


def test_rows_of_aligned_cells_the_model_missed_become_a_table():
    page = Page()
    page.column("intro", 100, 1100, 100, 3)
    for row in range(6):
        y = 300 + row * PITCH
        for x0, x1, text in ((100, 160, str(row + 3)), (200, 600, "Chart plotter mount"),
                             (800, 900, f"{100 + row}.20"), (1000, 1120, f"1,{row}03.60")):
            page.boxes.append((x0, y, x1, y + LINE))
            page.texts.append(text)
            page.labels.append("row")
    layout = structure_page(page.boxes, page.texts, [], PAGE)
    tables = [u for u in layout.units if u.type == "table"]
    assert len(tables) == 1 and len(tables[0].lines) == 24
    assert [u.type for u in layout.units if page.labels[u.lines[0]] == "intro"] == ["text"]
