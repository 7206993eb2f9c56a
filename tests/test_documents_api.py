"""A user's story of document OCR: upload over HTTP, poll the job, read the assembled result.

Real API, Redis, Celery OCR worker (split → pages in parallel → assemble) and PP-OCR models.
Character error rate thresholds: 0.02 for clean English, 0.05 for Chinese, 0.08 for the noisy page.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import requests
from PIL import Image

from devtools import docgen
from devtools.processes import wait_for_job
from maoocr.ocr.metrics import cer


def upload(stack, data: bytes, name: str = "upload.bin", **form) -> requests.Response:
    return requests.post(stack.base_url + "/v1/documents", files={"file": (name, data)}, data=form, timeout=60)




def test_english_page_round_trip(stack):
    page = docgen.english_page()
    # A misleading name: the format is recognised by content.
    reply = upload(stack, docgen.encode(page.image, "PNG"), name="scan.pdf")
    assert reply.status_code == 202, reply.text
    assert reply.json()["pages"] == 1
    job = wait_for_job(stack, reply.json()["job_id"])
    assert job["status"] == "succeeded" and job["kind"] == "ocr"
    assert job["progress"] == {"done": 1, "total": 1}
    result = job["result"]
    first = result["pages"][0]
    assert cer("\n".join(page.lines), first["text"]) <= 0.02
    assert first["strategy"] in ("fast", "accurate") and first["strategy_reason"]
    assert first["complexity"]["level"] in ("simple", "medium", "complex")
    assert first["engine"].startswith("rapidocr") and first["lines"][0]["polygon"]
    assert result["format"] == "png" and result["stats"]["pages"] == 1
    text = requests.get(f"{stack.base_url}/v1/jobs/{job['id']}/result?format=text").text
    assert text == result["text"]
    markdown = requests.get(f"{stack.base_url}/v1/jobs/{job['id']}/result?format=markdown").text
    assert markdown.startswith("<!-- page 1 -->")


def test_three_page_pdf_in_order_with_progress_events(stack):
    pages = docgen.numbered_pages(3)
    reply = upload(stack, docgen.pdf_bytes(pages), strategy="fast")
    job_id = reply.json()["job_id"]
    job = wait_for_job(stack, job_id)
    assert job["status"] == "succeeded"
    got = job["result"]["pages"]
    assert [p["page"] for p in got] == [1, 2, 3]
    for page, result in zip(pages, got):
        assert cer("\n".join(page.lines), result["text"]) <= 0.02
        assert result["strategy"] == "fast"
    events = requests.get(f"{stack.base_url}/v1/jobs/{job_id}/events", stream=True, timeout=30)
    chunks = [json.loads(line[6:]) for line in events.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    progress = [c["progress"]["done"] for c in chunks if c["event"] == "progress"]
    assert progress[0] == 0 and sorted(progress[1:]) == [1, 2, 3]
    assert chunks[-1]["finished"] and chunks[-1]["finish_reason"] == "succeeded"


def test_page_range_of_a_multipage_tiff(stack):
    pages = docgen.numbered_pages(4)
    reply = upload(stack, docgen.tiff_bytes(pages), pages="2-3")
    assert reply.json()["pages"] == 2
    job = wait_for_job(stack, reply.json()["job_id"])
    assert [p["page"] for p in job["result"]["pages"]] == [2, 3]
    assert "two" in job["result"]["pages"][0]["text"] and "three" in job["result"]["pages"][1]["text"]


def test_chinese_and_rotated_pages(stack):
    chinese = docgen.chinese_page()
    job = wait_for_job(stack, upload(stack, docgen.encode(chinese.image, "JPEG", quality=92)).json()["job_id"])
    assert cer("\n".join(chinese.lines), job["result"]["pages"][0]["text"]) <= 0.05
    turned = docgen.rotated(docgen.english_page(), 90)
    job = wait_for_job(stack, upload(stack, docgen.encode(turned.image, "WEBP", lossless=True)).json()["job_id"])
    page = job["result"]["pages"][0]
    assert page["orientation"] == 90 and cer("\n".join(turned.lines), page["text"]) <= 0.02


def test_a_bad_page_fails_alone(stack):
    pages = docgen.numbered_pages(3)
    data = bytearray(docgen.tiff_bytes(pages, compression="tiff_adobe_deflate"))
    tiff = Image.open(io.BytesIO(bytes(data)))
    tiff.seek(1)
    offset, length = tiff.tag_v2[273][0], tiff.tag_v2[279][0]  # page 2's first strip
    data[offset:offset + length] = b"\x00" * length
    reply = upload(stack, bytes(data))
    assert reply.status_code == 202, reply.text
    job = wait_for_job(stack, reply.json()["job_id"])
    assert job["status"] == "succeeded"
    statuses = [(p["page"], p["status"]) for p in job["result"]["pages"]]
    assert statuses == [(1, "succeeded"), (2, "failed"), (3, "succeeded")]
    assert job["result"]["pages"][1]["error"]["message"]
    assert "three" in job["result"]["pages"][2]["text"]
    assert job["result"]["stats"]["pages_failed"] == 1


@pytest.mark.parametrize("data,status,code", [
    (b"GIF89a" + b"\0" * 100, 415, "unsupported_media_type"),
    (docgen.truncated(docgen.encode(docgen.english_page().image, "PNG")), 422, "unprocessable_document"),
    (b"%PDF-1.7\n garbage", 422, "unprocessable_document"),
])
def test_bad_files_get_clear_errors(stack, data, status, code):
    reply = upload(stack, data)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code and reply.json()["error"]["message"]


def test_missing_file_and_bad_options(stack):
    reply = requests.post(stack.base_url + "/v1/documents", data={"strategy": "fast"}, timeout=30)
    assert reply.status_code == 400 and "'file'" in reply.json()["error"]["message"]
    png = docgen.encode(docgen.english_page().image, "PNG")
    assert upload(stack, png, strategy="magic").status_code == 400
    assert upload(stack, png, pages="x-y").status_code == 400
    assert upload(stack, png, pages="5-9").status_code == 400  # beyond the document


def test_cli_submit_status_stream(stack, tmp_path):
    page = docgen.numbered_pages(1)[0]
    path = tmp_path / "page.png"
    page.image.save(path)
    cli = [sys.executable, "-m", "maoocr.cli"]
    done = subprocess.run([*cli, "submit", str(path), "--wait", "--api", stack.base_url], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert cer("\n".join(page.lines), done.stdout.strip()) <= 0.02
    job_id = subprocess.run([*cli, "submit", str(path), "--api", stack.base_url], capture_output=True, text=True,
                            timeout=60).stdout.strip()
    events = subprocess.run([*cli, "stream", job_id, "--api", stack.base_url], capture_output=True, text=True,
                            timeout=240).stdout.splitlines()
    assert json.loads(events[-1])["finished"]
    record = json.loads(subprocess.run([*cli, "status", job_id, "--api", stack.base_url], capture_output=True,
                                       text=True, timeout=60).stdout)
    assert record["status"] == "succeeded" and record["id"] == job_id
    missing = subprocess.run([*cli, "status", "nope", "--api", stack.base_url], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and "job_not_found" in missing.stderr
    absent = subprocess.run([*cli, "submit", str(tmp_path / "absent.png"), "--api", stack.base_url],
                            capture_output=True, text=True, timeout=60)
    assert absent.returncode == 2 and "is not a file" in absent.stderr


def test_born_digital_pdf_reads_its_text_layer_in_column_order_without_running_headers(stack):
    data, truth = docgen.born_digital_paper(pages=2)
    job = wait_for_job(stack, upload(stack, data).json()["job_id"])
    assert job["status"] == "succeeded", job
    pages = job["result"]["pages"]
    for page, paragraphs in zip(pages, truth, strict=True):
        assert page["strategy"] == "text_layer" and "characters" in page["strategy_reason"]
        assert page["columns"] == 2
        assert docgen.JOURNAL_HEADER not in page["text"]
        kinds = {block["type"] for block in page["blocks"]}
        assert {"header", "page_number"} <= kinds, kinds
        flat = " ".join(page["text"].split())
        positions = [flat.find(paragraph) for paragraph in paragraphs]
        assert -1 not in positions and positions == sorted(positions), positions
    assert pages[0]["markdown"].startswith("# Sediment Transport in Northern Deltas")

    kept = wait_for_job(stack, upload(stack, data, keep_headers="true").json()["job_id"])
    kept_pages = kept["result"]["pages"]
    assert kept_pages[0]["text"].startswith(docgen.JOURNAL_HEADER)
    assert kept_pages[1]["text"].rstrip().endswith("2")
    assert docgen.JOURNAL_HEADER in kept["result"]["markdown"]


def test_keep_headers_must_be_a_boolean(stack):
    reply = upload(stack, docgen.encode(docgen.english_page().image, "PNG"), keep_headers="maybe")
    assert reply.status_code == 400 and "keep_headers" in reply.text
