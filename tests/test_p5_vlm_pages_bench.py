"""The VLM pages bench's direct path runs small on the tiny demo VLM and gives well-formed figures (its numbers are
read in docs, not asserted). The system path needs the whole stack; `python -m bench.run --only vlm_pages` runs it."""

from __future__ import annotations

from bench import p5_vlm_pages


def test_vlm_pages_bench_direct_path_runs_small():
    figures = list(p5_vlm_pages.run(p5_vlm_pages.P5Options(pages=2, max_tokens=8, rounds=1, system=False)))
    assert [f["metric"] for f in figures] == ["p5_vlm_pages_per_s_direct"]
    direct = figures[0]
    assert direct["value"] > 0 and direct["output_tok_s"] > 0 and len(direct["per_round"]) == 1
    assert direct["pages"] == 2 and direct["max_tokens"] == 8 and direct["device"] == "cpu"
    assert direct["prompt_tokens_per_page"] > 16  # the page image's tokens reached the model
