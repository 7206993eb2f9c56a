"""The document accuracy bench: a developer runs `python -m bench.run --only doc_accuracy --quick` and gets JSON
figures for MaoOCR and the PDF text layer on a generated page; the scorer behind them gives the truth a perfect score
and fails outputs that read columns out of order, leak running headers or scramble tables."""

from __future__ import annotations

import json
import random

import pytest

from bench import doc_accuracy
from bench.devset import PAGE_TYPES, build
from bench.devset.scoring import SystemOutput, html_tables, markdown_tables, run_check, score, truth_output

FIGURE_KEYS = {"pages", "cer", "running_excluded", "table_cells", "checks_pass", "checks", "pages_s"}


@pytest.fixture(scope="module")
def pages():
    return {t: build(t, 3) for t in PAGE_TYPES}


def test_quick_run_reads_a_generated_page_with_maoocr_and_scores_it(capsys) -> None:
    from bench.run import main

    assert main(["--only", "doc_accuracy", "--quick", "--systems", "maoocr,pdf_text"]) == 0
    figures = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    systems = {f["system"]: f for f in figures if f["metric"] == "doc_accuracy_system"}
    assert set(systems) == {"maoocr", "pdf_text"} and not any("skipped" in f for f in systems.values())
    rows = {f["system"]: f for f in figures if f["metric"] == "doc_accuracy"}
    assert set(rows) == {"maoocr", "pdf_text"}
    for row in rows.values():
        assert FIGURE_KEYS <= set(row) and row["page_type"] == "paper" and row["variant"] == "pdf"
        assert row["pages"] == 1 and 0 <= row["checks_pass"] <= 1 and row["cer"] >= 0 and row["pages_s"] > 0
        assert set(row["checks"]) == {"present", "absent", "order", "table"}
    # The text layer holds every word, in column order: present and order checks pass, headers are in it.
    assert rows["pdf_text"]["checks"]["present"].split("/")[0] == rows["pdf_text"]["checks"]["present"].split("/")[1]
    assert rows["pdf_text"]["cer"] < 0.05 and rows["pdf_text"]["running_excluded"] == 0
    summaries = [f for f in figures if f["metric"] == "doc_accuracy_checks_pass"]
    assert {f["system"] for f in summaries} == {"maoocr", "pdf_text"}


def test_missing_tesseract_is_reported_not_fatal(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    figures = doc_accuracy.run(doc_accuracy.DocAccuracyOptions(systems=("tesseract",), page_types=("letter",),
                                                               variants=("pdf",), seeds=1))
    assert figures[0]["metric"] == "doc_accuracy_system" and "not found" in figures[0]["skipped"]
    assert [f for f in figures if f["metric"] == "doc_accuracy"] == []


@pytest.mark.parametrize("page_type", PAGE_TYPES)
def test_the_truth_scores_perfectly(pages, page_type: str) -> None:
    truth = pages[page_type].truth
    assert len(truth.checks) >= 15
    result = score(truth, truth_output(truth))
    assert result.cer == 0 and result.failures == []
    assert result.running_excluded == result.running == len(truth.running) > 0
    assert result.table_cells_found == result.table_cells


def test_floats_may_sit_anywhere_but_must_be_there(pages) -> None:
    truth = pages["magazine"].truth
    assert len(truth.floats) == 2  # the pull quote and the photo caption
    body = truth.text
    for text in truth.floats:
        body = body.replace(text, "")
    moved = "\n\n".join(truth.floats) + "\n\n" + body
    assert score(truth, SystemOutput(text=moved)).cer == 0
    assert score(truth, SystemOutput(text=body)).cer > 0.02


def test_pages_are_the_same_for_the_same_seed(pages) -> None:
    again = build("magazine", 3)
    assert again.truth == pages["magazine"].truth and again.pdf == pages["magazine"].pdf
    assert again.document("scan300") == pages["magazine"].document("scan300")
    assert build("magazine", 4).truth.text != again.truth.text


@pytest.mark.parametrize("page_type", ["magazine", "newspaper", "paper"])
def test_columns_read_out_of_order_fail_the_order_checks(pages, page_type: str) -> None:
    page = pages[page_type]
    across = [c for c in page.truth.checks if c.note.startswith("end of column")]
    assert across
    in_order = SystemOutput(text="\n\n".join(page.columns))
    assert all(run_check(c, in_order) for c in across)
    reversed_columns = SystemOutput(text="\n\n".join(reversed(page.columns)))
    assert not any(run_check(c, reversed_columns) for c in across)
    result = score(page.truth, reversed_columns)
    assert result.checks["order"][0] < result.checks["order"][1]
    blocks = page.truth.text.split("\n\n")
    random.Random(0).shuffle(blocks)
    result = score(page.truth, SystemOutput(text="\n\n".join(blocks)))
    assert result.checks["present"][0] == result.checks["present"][1]  # every sentence is still there
    assert result.checks["order"][0] < result.checks["order"][1] and result.cer > 0.3


def test_running_headers_and_page_numbers_in_the_text_fail_the_absent_checks(pages) -> None:
    truth = pages["magazine"].truth
    leaked = "\n".join(truth.running[:-1]) + "\n" + truth.text + "\n" + truth.running[-1] + "\n"
    result = score(truth, SystemOutput(text=leaked))
    assert result.checks["absent"] == [0, len(truth.running)] and result.running_excluded == 0


def test_tables_are_read_from_markdown_and_html_and_must_keep_their_cells_in_place(pages) -> None:
    truth = pages["invoice"].truth
    grid = truth.tables[0]
    markdown = "\n".join(["| " + " | ".join(row) + " |" for row in grid[:1]] + ["|---|---|---|---|"] +
                         ["| " + " | ".join(row) + " |" for row in grid[1:]])
    html = "<table>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in grid) + "</table>"
    assert markdown_tables(markdown) == [grid] and html_tables(html) == [grid]
    for text in (markdown, html):
        result = score(truth, SystemOutput(text=truth.text, markdown=text))
        assert result.checks["table"][0] == result.checks["table"][1]
    swapped = [[row[1], row[0], row[3], row[2]] for row in grid]
    result = score(truth, SystemOutput(text=truth.text, tables=[swapped]))
    assert result.checks["table"][0] < result.checks["table"][1]
    assert score(truth, SystemOutput(text=truth.text)).table_cells_found == 0
