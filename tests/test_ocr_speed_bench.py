"""The OCR speed bench runs small and gives well-formed figures (its numbers are read in docs, not asserted)."""

from __future__ import annotations

from bench import ocr_speed


def test_ocr_speed_bench_runs_small():
    figures = ocr_speed.run(ocr_speed.OCRSpeedOptions(page_types=("letter",), rounds=1, text_layer_repeats=1))
    by_metric = {f["metric"]: f for f in figures}
    assert by_metric["ocr_speed_structure_ratio"]["value"] > 0
    page = by_metric["ocr_speed_page_cpu_s"]
    assert page["line_order_only"] > 0 and page["with_layout_and_tables"] > 0
    text_layer = by_metric["ocr_speed_text_layer_pages_s_per_core"]
    assert text_layer["value"] > 0 and text_layer["pages"] == 2
    assert "layout_model" in text_layer["ms_per_step_median"]
    assert all(f["value"] > 0 for f in figures if f["metric"] == "ocr_speed_rss_mb")
