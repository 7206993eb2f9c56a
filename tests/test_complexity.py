"""Page complexity features on synthetic pages whose layout, rotation, skew and noise are known: 150 dpi A4 gray
images, and 300 dpi 1-bit Group 4 TIFFs as archives keep their scans."""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from bench.complexity_bench import A4_150DPI, font, make_page
from maoocr.documents import load_document
from maoocr.errors import InvalidRequest, UnprocessableDocument
from maoocr.pipeline.complexity import ComplexityAnalysis, analyze_page


@functools.lru_cache(maxsize=None)
def page(kind: str, seed: int = 0) -> Image.Image:
    return make_page(kind, seed)


@functools.lru_cache(maxsize=None)
def analysis(kind: str, seed: int = 0) -> ComplexityAnalysis:
    return analyze_page(page(kind, seed))


def digits_page(seed: int) -> Image.Image:
    """Only digits: no ascender/descender asymmetry, so 0 and 180 cannot be told apart."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", A4_150DPI, 255)
    draw = ImageDraw.Draw(img)
    for y in range(110, 1600, 32):
        draw.text((110, y), "   ".join(str(n) for n in rng.integers(1000, 99999, size=10)), font=font(22), fill=0)
    return img


def test_plain_page_is_simple_single_column_upright() -> None:
    a = analysis("plain")
    f = a.features
    assert a.level == "simple" and a.score < 0.3
    assert (f.columns, f.has_table, f.is_blank, f.is_color, f.inverted) == (1, False, False, False, False)
    assert (f.horizontal_rules, f.vertical_rules) == (0, 0)
    assert f.orientation == 0 and f.orientation_confidence > 0.5
    assert abs(f.skew_deg) < 0.5
    assert (f.width_px, f.height_px, f.dpi, f.dpi_source) == (1240, 1754, 150.0, "paper_size")
    assert 30 <= f.text_lines_per_column <= 50
    assert 0.03 < f.ink_ratio < 0.25 and 0.1 < f.text_area_ratio < 0.6
    assert a.analyzer == "heuristic" and a.analysis_ms > 0


@pytest.mark.parametrize(("kind", "columns"), [("two_column", 2), ("three_column", 3)])
def test_columns_are_counted(kind: str, columns: int) -> None:
    assert analysis(kind).features.columns == columns


def test_ruled_table_is_found_and_makes_the_page_complex() -> None:
    a = analysis("table")
    # make_page("table") draws a 12 x 4 grid: 13 horizontal and 5 vertical rules.
    assert (a.features.has_table, a.features.horizontal_rules, a.features.vertical_rules) == (True, 13, 5)
    assert 0.1 < a.features.table_area_ratio < 0.6
    assert a.features.columns == 1  # the table's cells are not text columns
    assert a.level == "complex" and "table" in a.contributions


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_orientation_of_rotated_pages(angle: int) -> None:
    f = analyze_page(page("plain", 1).rotate(angle, expand=True, fillcolor=255)).features
    assert f.orientation == angle
    assert f.orientation_confidence > 0.5
    assert abs(f.skew_deg) < 0.5
    assert f.columns == 1


@pytest.mark.parametrize("angle", [90, 270])
def test_two_columns_are_found_on_a_page_lying_on_its_side(angle: int) -> None:
    f = analyze_page(page("two_column", 2).rotate(angle, expand=True, fillcolor=255)).features
    assert (f.orientation, f.columns) == (angle, 2)


def test_orientation_without_latin_cue_is_reported_as_undecided() -> None:
    for angle in (0, 180):
        f = analyze_page(digits_page(3).rotate(angle, expand=True, fillcolor=255)).features
        assert f.orientation == 0 and f.orientation_confidence <= 0.5


@pytest.mark.parametrize("kind", ["table", "noisy", "color", "three_column"])
def test_orientation_is_right_or_admitted_unknown(kind: str) -> None:
    for angle in (180, 270):
        f = analyze_page(page(kind, 12).rotate(angle, expand=True, fillcolor=255 if page(kind, 12).mode == "L"
                                                else (255, 255, 255))).features
        assert f.orientation == angle or (f.orientation == angle - 180 and f.orientation_confidence <= 0.5)


@pytest.mark.parametrize("angle", [5.0, -5.0, 2.5])
def test_skew_angle_and_sign(angle: float) -> None:
    img = page("plain", 4).rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    f = analyze_page(img).features
    assert abs(f.skew_deg - angle) < 0.5
    assert f.orientation == 0


def test_noisy_low_contrast_page_versus_clean() -> None:
    clean, noisy = analysis("plain").features, analysis("noisy").features
    assert noisy.noise_sigma > clean.noise_sigma + 10
    assert 15 < noisy.noise_sigma < 30  # the generator adds sigma 22
    assert noisy.contrast < clean.contrast - 0.3
    assert noisy.snr < 5 < clean.snr
    assert not noisy.is_blank and noisy.columns == 1
    assert analysis("noisy").level == "complex" and "noise" in analysis("noisy").contributions


def test_colour_page() -> None:
    colour = analysis("color").features
    assert colour.is_color and colour.color_ratio > 0.01 and colour.mean_saturation > 0.05
    gray_as_rgb = analyze_page(page("plain").convert("RGB")).features
    assert not gray_as_rgb.is_color and gray_as_rgb.color_ratio == 0.0


def test_blank_pages() -> None:
    rng = np.random.default_rng(7)
    noisy_blank = Image.fromarray(np.clip(200 + rng.normal(0, 20, A4_150DPI[::-1]), 0, 255).astype(np.uint8))
    for img in (page("blank"), noisy_blank, Image.new("RGB", A4_150DPI, (120, 120, 120))):
        a = analyze_page(img)
        assert a.features.is_blank and a.features.columns == 0 and a.features.ink_ratio < 0.005
        assert (a.score, a.level) == (0.0, "simple")


def test_level_ordering() -> None:
    plain, two, table = analysis("plain"), analysis("two_column"), analysis("table")
    assert plain.score < two.score < table.score
    assert (plain.level, two.level, table.level) == ("simple", "medium", "complex")


def test_score_is_the_noisy_or_of_the_contributions() -> None:
    for kind in ("two_column", "table", "noisy", "color"):
        a = analysis(kind)
        assert a.contributions
        assert math.isclose(a.score, 1 - math.prod(1 - c for c in a.contributions.values()), abs_tol=1e-3)


def test_inverted_page() -> None:
    f = analyze_page(ImageOps.invert(page("plain", 5))).features
    assert f.inverted and not f.is_blank
    assert (f.orientation, f.columns) == (0, 1)


def test_higher_resolution_and_given_dpi() -> None:
    big = page("two_column", 6).resize((2480, 3508), Image.Resampling.BICUBIC)
    small_f, big_f = analyze_page(page("two_column", 6)).features, analyze_page(big, dpi=300).features
    assert (big_f.dpi, big_f.dpi_source, big_f.columns) == (300.0, "given", 2)
    assert 1.6 < big_f.line_height_px / small_f.line_height_px < 2.4


def test_crop_that_is_not_a_page_gets_dpi_from_line_pitch() -> None:
    # 700 x 500 has A4's aspect ratio; as a whole page it would be 60 dpi, the text says ~150.
    f = analyze_page(page("plain", 8).crop((100, 300, 800, 800))).features
    assert f.dpi_source == "line_pitch" and 110 < f.dpi < 200
    assert f.columns == 1


@pytest.mark.parametrize("mode", ["RGBA", "P", "1", "I;16", "CMYK", "LA"])
def test_image_modes(mode: str) -> None:
    src = page("two_column", 9)
    img = Image.fromarray(np.asarray(src).astype(np.uint16) * 257) if mode == "I;16" else src.convert(mode)
    f = analyze_page(img).features
    assert (f.columns, f.orientation, f.is_blank) == (2, 0, False)


def test_deterministic() -> None:
    a, b = analyze_page(page("table", 10)), analyze_page(page("table", 10))
    assert a.features == b.features and (a.score, a.level, a.contributions) == (b.score, b.level, b.contributions)


def test_invalid_input() -> None:
    with pytest.raises(InvalidRequest):
        analyze_page(np.zeros((100, 100), dtype=np.uint8))  # type: ignore[arg-type]
    for dpi in (0.0, -72.0, float("nan")):
        with pytest.raises(InvalidRequest):
            analyze_page(page("plain"), dpi=dpi)
    with pytest.raises(UnprocessableDocument):
        analyze_page(Image.new("L", (20, 400), 255))


# -- bilevel archive scans ----------------------------------------------------------------------------------------

def bilevel_magazine(seed: int = 3) -> Image.Image:
    """A 300 dpi A4 magazine page: a title across the page over three unequal columns, thresholded to 1 bit."""
    import random  # noqa: PLC0415

    from bench.complexity_bench import draw_paragraphs  # noqa: PLC0415

    img = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(img)
    draw.text((180, 180), "The Weekly Magazine Story", font=font(110), fill=0)
    rng, x = random.Random(seed), 180
    for width in (1000, 480, 480):
        draw_paragraphs(draw, (x, 420, x + width, 3508 - 220), rng, size=38)
        x += width + 80
    return img.point(lambda v: 255 if v > 128 else 0).convert("1")


def group4_tiff(image: Image.Image, dpi: int = 300) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="TIFF", compression="group4", dpi=(dpi, dpi))
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def magazine_tiff() -> bytes:
    return group4_tiff(bilevel_magazine())


def test_bilevel_three_column_tiff_uses_its_own_dpi() -> None:
    doc = load_document(magazine_tiff())
    assert doc.page_dpi(0) == 300.0
    f = analyze_page(doc.render_page(0), doc.page_dpi(0)).features
    assert (f.dpi, f.dpi_source) == (300.0, "given")
    assert not f.is_blank and f.contrast == 1.0 and (f.ink_level, f.background_level) == (0.0, 255.0)
    assert f.columns == 3
    assert f.orientation == 0 and f.orientation_confidence > 0.5


def test_small_bilevel_image_is_not_blank() -> None:
    # Up to 1024 px the page is analysed unreduced: only 0 and 255, which every Otsu level splits equally well.
    img = Image.new("L", (640, 480), 255)
    draw = ImageDraw.Draw(img)
    for row in range(10):
        draw.text((30, 30 + 42 * row), "Invoice 2024-0117 was paid on March 5th, balance", font=font(28), fill=0)
    doc = load_document(group4_tiff(img.point(lambda v: 255 if v > 128 else 0).convert("1")))
    for dpi in (None, doc.page_dpi(0)):
        f = analyze_page(doc.render_page(0), dpi).features
        assert not f.is_blank and f.contrast == 1.0 and f.text_lines_per_column >= 8
        assert f.dpi_source in ("given", "line_pitch")


@pytest.mark.parametrize(("turn", "reported"), [(90, 90), (-90, 270), (180, 180)])
def test_orientation_of_a_turned_bilevel_scan(turn: int, reported: int) -> None:
    """PIL turns counter-clockwise for positive angles; `orientation` is the counter-clockwise turn of the page."""
    doc = load_document(group4_tiff(bilevel_magazine().rotate(turn, expand=True)))
    f = analyze_page(doc.render_page(0), doc.page_dpi(0)).features
    assert (f.orientation, f.columns) == (reported, 3) and f.orientation_confidence > 0.5
    upright = doc.render_page(0).rotate(-f.orientation, expand=True)
    assert upright.size == (2480, 3508)


@pytest.mark.parametrize(("dpi", "stated"), [(300, 300.0), (600, 600.0), (72, None)])
def test_page_dpi_of_images(dpi: int, stated: float | None) -> None:
    img = Image.new("L", (2480, 3508), 255)
    png = io.BytesIO()
    img.save(png, format="PNG", dpi=(dpi, dpi))
    # 72 dpi would make this a 34 x 49 inch page: a placeholder, not a scan resolution.
    assert load_document(png.getvalue()).page_dpi(0) == stated
    assert load_document(group4_tiff(img.convert("1"), dpi)).page_dpi(0) == stated
