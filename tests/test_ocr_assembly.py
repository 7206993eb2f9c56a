"""An OCR job's result names the upload's detected format, whichever process assembles it.

The pages of a document run on many worker processes and its result is assembled by whichever finishes the last
page, which may never have parsed the upload itself."""

from __future__ import annotations

import json

import pytest
import redis

from devtools import docgen
from maoocr.config import load_settings
from maoocr.pipeline.ocr_job import OCRJobs, failed_page
from maoocr.protocol.ocr import OCROptions
from maoocr.store.jobs import JobStore
from maoocr.store.streams import StreamStore


@pytest.mark.parametrize("fmt", ["png", "pdf", "tiff"])
def test_a_process_that_never_parsed_the_upload_names_its_format(redis_url, redis_client, fmt):
    page = docgen.numbered_pages(1)[0]
    data = docgen.pdf_bytes([page]) if fmt == "pdf" else docgen.encode(page.image, fmt.upper())

    def side() -> OCRJobs:  # what one process holds: its own clients, no parsed documents
        settings = load_settings(env={"MAOOCR_REDIS_URL": redis_url})
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        return OCRJobs(settings, JobStore(client, 600), StreamStore(client, 600), redis.Redis.from_url(redis_url))

    # Named misleadingly on purpose: the format comes from the bytes.
    record, pages = side().accept(data, OCROptions(), lambda payload, queue, priority: json.dumps(payload))
    assert pages == 1
    assembler = side()
    assembler.jobs.transition(record.id, ("queued",), "running")
    assembler.finish(record.id, [failed_page(0, 1, "page_failed", "not run in this test")])
    result = assembler.jobs.get(record.id).result
    assert result["format"] == fmt and result["stats"]["pages"] == 1
