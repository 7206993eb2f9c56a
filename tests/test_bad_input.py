"""Hostile and broken input over HTTP: every answer is a 4xx with a message (never a 5xx or a hang), and the
workers go on serving. Format-level cases (truncations, corruptions, each limit) are in test_documents.py."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib

import pypdfium2 as pdfium
import pytest
import requests
import websocket

from devtools import docgen
from devtools.processes import wait_for_job
from maoocr.store.keys import JOB_KEY
from tests.test_documents_api import upload


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def png_bomb(side: int = 12_000) -> bytes:
    """A real, fully decodable side x side gray image (144 MP) that compresses to about 150 KB."""
    row = b"\x00" * (side + 1)  # filter byte + one gray byte per pixel
    packer = zlib.compressobj(9)
    raw = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def pdf_pages(count: int, size_pt: float = 200) -> bytes:
    pdf = pdfium.PdfDocument.new()
    for _ in range(count):
        pdf.new_page(size_pt, size_pt)
    buf = io.BytesIO()
    pdf.save(buf)
    pdf.close()
    return buf.getvalue()


def assert_4xx(reply: requests.Response, status: int, code: str | None = None) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"] and (code is None or error["code"] == code), error
    return error


@pytest.mark.parametrize("name,make,status,code,fragment", [
    ("empty", lambda: b"", 415, "unsupported_media_type", "empty"),
    ("bomb", png_bomb, 413, "payload_too_large", "too large"),
    ("absurd dimensions", lambda: png_declaring(2_000_000_000, 3), 413, "payload_too_large", ""),
    ("pdf with thousands of pages", lambda: pdf_pages(5000), 413, "payload_too_large", "5000 pages"),
    ("pdf page of 5 x 5 m", lambda: pdf_pages(1, 14_400), 413, "payload_too_large", "pixels"),
    ("elf executable", lambda: b"\x7fELF\x02\x01\x01" + b"\x00" * 200, 415, "unsupported_media_type", ""),
    ("html", lambda: b"<!doctype html><script>alert(1)</script>", 415, "unsupported_media_type", ""),
    ("zip", lambda: b"PK\x03\x04" + b"\x00" * 100, 415, "unsupported_media_type", "ZIP"),
    ("png header only", lambda: b"\x89PNG\r\n\x1a\n", 422, "unprocessable_document", ""),
    ("pdf header only", lambda: b"%PDF-1.7\n", 422, "unprocessable_document", ""),
])
def test_malicious_and_broken_uploads_are_refused_with_a_reason(stack, name, make, status, code, fragment):
    data = make()
    started = time.monotonic()
    error = assert_4xx(upload(stack, data, name="scan.png"), status, code)
    assert fragment in error["message"], error
    assert time.monotonic() - started < 30, f"{name}: refusing took too long"


def test_a_page_range_of_a_huge_pdf_renders_only_those_pages(stack):
    reply = upload(stack, pdf_pages(5000), pages="4999-5000")
    assert reply.status_code == 202 and reply.json()["pages"] == 2, reply.text
    job = wait_for_job(stack, reply.json()["job_id"])
    # Blank pages: nothing to read, but each page ran and the job ends normally.
    assert job["status"] == "succeeded" and [p["page"] for p in job["result"]["pages"]] == [4999, 5000]


def test_wrong_content_types_and_empty_bodies(stack):
    base = stack.base_url
    png = docgen.encode(docgen.numbered_pages(1)[0].image, "PNG")
    # A document sent as raw bytes, as JSON, or with no body: not multipart, so no 'file' field.
    for kwargs in ({"data": png, "headers": {"Content-Type": "image/png"}}, {"json": {"file": "aGVsbG8="}}, {}):
        assert "'file'" in assert_4xx(requests.post(base + "/v1/documents", timeout=30, **kwargs), 400)["message"]
    broken_multipart = requests.post(base + "/v1/documents", data=b"--x\r\nnonsense",
                                     headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=30)
    assert_4xx(broken_multipart, 400)
    for path in ("/api/generate", "/v1/chat/completions", "/v1/completions"):
        assert "empty" in assert_4xx(requests.post(base + path, timeout=30), 400, "invalid_request")["message"]
        form = requests.post(base + path, data={"prompt": "hi"}, timeout=30)
        assert "not valid JSON" in assert_4xx(form, 400, "invalid_request")["message"]
        plain = requests.post(base + path, data=b"\xff\xfe{", headers={"Content-Type": "text/plain"}, timeout=30)
        assert_4xx(plain, 400, "invalid_request")
        listed = requests.post(base + path, json=[{"prompt": "hi"}], timeout=30)
        assert "JSON object" in assert_4xx(listed, 400, "invalid_request")["message"]


def test_huge_and_hostile_fields(stack):
    base = stack.base_url
    png = docgen.encode(docgen.numbered_pages(1)[0].image, "PNG")
    huge_field = requests.post(base + "/v1/documents", files={"file": ("a.png", png)},
                               data={"strategy": "x" * 3_000_000}, timeout=60)
    assert_4xx(huge_field, 413)
    many_fields = requests.post(base + "/v1/documents", files={"file": ("a.png", png)},
                                data={f"f{i}": "1" for i in range(20_000)}, timeout=60)
    assert many_fields.status_code in (400, 413) and many_fields.json()["error"]["message"]
    oversized = requests.post(base + "/v1/documents", files={"file": ("a.png", b"\x00" * (60 * 2**20))}, timeout=120)
    assert_4xx(oversized, 413)
    deep = requests.post(base + "/api/generate", data="[" * 100_000, headers={"Content-Type": "application/json"},
                         timeout=30)
    assert "nested too deeply" in assert_4xx(deep, 400, "invalid_request")["message"]
    deep_field = requests.post(base + "/api/generate", timeout=30, headers={"Content-Type": "application/json"},
                               data='{"prompt": ' + "[" * 3000 + "]" * 3000 + "}")
    assert_4xx(deep_field, 400, "invalid_request")
    for body in ({"prompt": "x", "max_tokens": 10 ** 40}, {"prompt": "x", "max_tokens": 1e400},
                 {"prompt": "x", "temperature": "hot"}, {"prompt": ["x"] * 5}, {"prompt": {"$ne": 1}},
                 {"prompt": "x", "stop": ["s"] * 10_000}, {"prompt": "x", "n": -1}):
        reply = requests.post(base + "/api/generate", data=json.dumps(body), timeout=30,
                              headers={"Content-Type": "application/json"})
        assert 400 <= reply.status_code < 500 and reply.json()["error"]["message"], (body, reply.text)
    # A job id is only ever a lookup key: path tricks find nothing.
    for job_id in ("../../etc/passwd", "*", JOB_KEY.format("*"), "x" * 5000, "%00"):
        assert requests.get(f"{base}/v1/jobs/{job_id}", timeout=30).status_code == 404


def test_websocket_garbage_gets_an_error_not_a_crash(stack):
    url = stack.base_url.replace("http", "ws") + "/ws/stream"
    for message in ("[" * 100_000, "{}", json.dumps({"job_id": {"$gt": ""}}), json.dumps({"prompt": 5}),
                    json.dumps({"job_id": "nope", "after": "x"})):
        ws = websocket.create_connection(url, timeout=60)
        try:
            ws.send(message)
            reply = json.loads(ws.recv())
        finally:
            ws.close()
        assert reply["error"]["code"] in ("invalid_request", "job_not_found"), (message[:40], reply)


def test_workers_survive_all_of_it(stack):
    """Run last in this module: after everything above, both workers still serve."""
    before = {w["kind"]: w["name"] for w in requests.get(stack.base_url + "/readyz", timeout=30).json()["workers"]}
    page = docgen.numbered_pages(1)[0]
    job = wait_for_job(stack, upload(stack, docgen.encode(page.image, "PNG"), strategy="fast").json()["job_id"])
    assert job["status"] == "succeeded" and "one" in job["result"]["text"]
    generated = requests.post(stack.base_url + "/api/generate", timeout=120,
                              json={"prompt": "still here", "max_tokens": 3, "ignore_eos": True, "wait": True})
    assert generated.status_code == 200, generated.text
    after = {w["kind"]: w["name"] for w in requests.get(stack.base_url + "/readyz", timeout=30).json()["workers"]}
    assert after == before  # the same processes (names carry the pid), not restarted ones
