"""An OCR job's lifecycle, transport-free: accept an upload, split it into pages, run a page, assemble.

The document bytes wait in Redis (`maoocr:doc:<job_id>`, same TTL as the job) so any worker can render any page.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Callable

import redis

from maoocr.config import Settings
from maoocr.documents import LoadedDocument, load_document
from maoocr.errors import MaoOCRError
from maoocr.jobs import JobStore, error_fields
from maoocr.ocr.base import OCREngine
from maoocr.pipeline.assemble import assemble
from maoocr.protocol.generation import StreamChunk
from maoocr.protocol.jobs import JobError, JobRecord
from maoocr.protocol.ocr import OCROptions, PageResult
from maoocr.streams import StreamStore

log = logging.getLogger(__name__)

DOC_KEY = "maoocr:doc:{}"
PAGES_DONE_KEY = "maoocr:job:{}:pages_done"


class OCRJobs:
    def __init__(self, settings: Settings, jobs: JobStore, streams: StreamStore, blobs: redis.Redis,
                 engine_for: Callable[[str], OCREngine] | None = None, engine_threads: int | None = None) -> None:
        self.settings = settings
        self.jobs = jobs
        self.streams = streams
        self.blobs = blobs  # a bytes (non-decoding) client
        self.engine_for = engine_for or self._default_engine
        self.engine_threads = engine_threads  # ONNX threads per engine: cores / worker processes
        self._docs: OrderedDict[str, LoadedDocument] = OrderedDict()

    # -- API side -------------------------------------------------------------------------------------------
    def accept(self, data: bytes, options: OCROptions, owner: str | None = None) -> tuple[JobRecord, int]:
        """Validate the upload (format, size, pages, pixels: errors are 4xx) and store it; returns the job."""
        doc = load_document(data, self.settings.documents, options.page_range)
        record = self.jobs.create("ocr", owner=owner)
        self.blobs.set(DOC_KEY.format(record.id), data, ex=self.settings.ttls.job_s)
        self.jobs.transition(record.id, ("queued",), "queued", progress={"done": 0, "total": doc.page_count})
        return self.jobs.get(record.id), doc.page_count

    # -- worker side ----------------------------------------------------------------------------------------
    def start(self, job_id: str, options: OCROptions) -> int | None:
        """queued → running; the number of pages to fan out, or None when the job is not ours to run."""
        record = self.jobs.get(job_id)
        moved, before = self.jobs.transition(job_id, ("queued", "running"), "running", started_at=time.time(),
                                             attempts=record.attempts + 1)
        if not moved:
            log.info("job=%s skipped: already %s", job_id, before)
            return None
        try:
            doc = self.document(job_id, options)
        except MaoOCRError as exc:
            self.fail(job_id, exc)
            return None
        self._progress(job_id, 0, doc.page_count)
        return doc.page_count

    def run_page(self, job_id: str, options: OCROptions, index: int) -> PageResult:
        """One page; any failure becomes a failed page with its reason, never a failed job."""
        # Imported here: the API process uses this class to accept uploads and must not load OpenCV or ONNX.
        from maoocr.pipeline.page import process_page
        from maoocr.pipeline.resources import read_resources

        page_number = index + 1
        try:
            doc = self.document(job_id, options)
            page_number = doc.page_numbers[index]
            image = doc.render_page(index)
            resources = read_resources(self.jobs.redis, self.settings)
            result = process_page(image, index, page_number, options, resources, self.engine_for,
                                  dpi=doc.limits.pdf_dpi if doc.format == "pdf" else None)
        except MaoOCRError as exc:
            result = failed_page(index, page_number, exc.code, exc.message)
        except Exception as exc:  # one bad page must not take the document down
            log.exception("job=%s page=%d failed", job_id, page_number)
            result = failed_page(index, page_number, "page_failed", f"{type(exc).__name__}: {exc}")
        key = PAGES_DONE_KEY.format(job_id)
        with self.jobs.redis.pipeline() as pipe:  # counted in Redis: pages finish on many workers at once
            pipe.incr(key)
            pipe.expire(key, self.settings.ttls.job_s)
            done = int(pipe.execute()[0])
        total = int((self.jobs.get(job_id).progress or {}).get("total", 0))
        self._progress(job_id, done, total)
        return result

    def finish(self, job_id: str, pages: list[PageResult]) -> None:
        record = self.jobs.get(job_id)
        fmt = self._docs[job_id].format if job_id in self._docs else "unknown"
        result = assemble(fmt, pages)
        moved, before = self.jobs.transition(job_id, ("running",), "succeeded", result=result.model_dump(mode="json"),
                                             progress={"done": len(pages), "total": len(pages)})
        self.streams.append([StreamChunk(job_id=job_id, event="end", finished=True,
                                         finish_reason="succeeded" if moved else before)])
        self.blobs.delete(DOC_KEY.format(job_id))
        self._docs.pop(job_id, None)
        log.info("job=%s assembled %d pages (%s)", job_id, len(pages), record.status)

    def fail(self, job_id: str, exc: BaseException) -> None:
        fields = error_fields(exc)
        moved, before = self.jobs.transition(job_id, ("queued", "running"), "failed", **fields)
        self.streams.append([StreamChunk(job_id=job_id, event="end", finished=True,
                                         finish_reason="error" if moved else before,
                                         error=fields["error"] if moved else None)])
        self.blobs.delete(DOC_KEY.format(job_id))

    def document(self, job_id: str, options: OCROptions) -> LoadedDocument:
        """The job's document, parsed once per process (pages of one job tend to land on the same worker)."""
        doc = self._docs.get(job_id)
        if doc is None:
            data = self.blobs.get(DOC_KEY.format(job_id))
            if data is None:
                raise MaoOCRError("the uploaded document expired before it was processed", code="document_expired")
            doc = load_document(data, self.settings.documents, options.page_range)
            self._docs[job_id] = doc
            while len(self._docs) > 4:
                self._docs.popitem(last=False)
        return doc

    def _progress(self, job_id: str, done: int, total: int) -> None:
        progress = {"done": done, "total": total}
        self.jobs.transition(job_id, ("running",), "running", progress=progress)
        self.streams.append([StreamChunk(job_id=job_id, event="progress", progress=progress)])

    def _default_engine(self, strategy: str) -> OCREngine:
        from maoocr.ocr.registry import get_ocr_engine

        if strategy == "vlm":
            # No VLM OCR backend is wired into this worker; strategy selection only routes here when a
            # multimodal worker is alive, so say so rather than silently using another engine.
            raise MaoOCRError("the VLM OCR backend is not available in this worker", code="vlm_unavailable")
        if self.settings.ocr.engine == "rapidocr":
            return get_ocr_engine("rapidocr", profile="accurate" if strategy == "accurate" else "fast",
                                  threads=self.engine_threads)
        return get_ocr_engine(self.settings.ocr.engine)


def failed_page(index: int, page: int, code: str, message: str) -> PageResult:
    return PageResult(index=index, page=page, status="failed", error=JobError(code=code, message=message))
