"""An OCR job's lifecycle, transport-free: accept an upload, split it into pages, run a page, assemble.

The document bytes wait in Redis (`maoocr:doc:<job_id>`, same TTL as the job) so any worker can render any page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable

import redis

from maoocr.config import Settings
from maoocr.documents import LoadedDocument, load_document, sniff_format
from maoocr.errors import MaoOCRError
from maoocr.generation.call import Generate, QueuedGeneration
from maoocr.metrics import PAGE_SECONDS, PAGES_PROCESSED, observe_finished, observe_started
from maoocr.ocr.base import OCREngine
from maoocr.pipeline.assemble import assemble
from maoocr.priorities import RequestedPriority, job_priority, queue_list
from maoocr.protocol.generation import StreamChunk
from maoocr.protocol.jobs import JobError, JobRecord
from maoocr.protocol.ocr import OCROptions, OCRTask, PageDecision, PageHandOff, PageResult
from maoocr.store.heartbeats import live_workers
from maoocr.store.jobs import JobStore, error_fields, new_job_id
from maoocr.store.keys import DOC_KEY, PAGES_DONE_KEY, SPLIT_KEY
from maoocr.store.streams import StreamStore
from maoocr.tasks import TaskMessage
from maoocr.usage.quotas import enforce_quotas

if TYPE_CHECKING:  # page.py loads OpenCV, which the API process (it accepts uploads here) must not
    from maoocr.pipeline.page import PageSteps

log = logging.getLogger(__name__)

BUSY_POLL_S = 1.0
MODELS_WORKER_RECHECK_S = 5.0


class OCRJobs:
    def __init__(self, settings: Settings, jobs: JobStore, streams: StreamStore, blobs: redis.Redis,
                 engine_for: Callable[[str], OCREngine] | None = None, engine_threads: int | None = None,
                 generate: Generate | None = None) -> None:
        self.settings = settings
        self.jobs = jobs
        self.streams = streams
        self.blobs = blobs  # a bytes (non-decoding) client
        self.engine_for = engine_for  # None: the engines settings.ocr names
        self.engine_threads = engine_threads  # ONNX threads per engine: cores / worker processes
        self.generate = generate  # how this process reaches models (VLM OCR, VLM analysis, LLM selection)
        self._steps: PageSteps | None = None
        self._docs: OrderedDict[str, LoadedDocument] = OrderedDict()
        self._lock = threading.RLock()  # the model-steps worker runs many pages at once, on threads
        self.worker = "local"  # identity jobs are claimed under (the worker's Heartbeat.identity)
        self.hand_off_models = False  # True in the OCR worker: model steps go to the model-steps queue ...
        self._models_worker = (0.0, False)  # ... while a model-steps worker is alive: (looked up at, alive)
        self.models_only = False  # True in the model-steps worker: no layout or table models to load

    # -- API side -------------------------------------------------------------------------------------------
    def accept(self, data: bytes, options: OCROptions, message: TaskMessage, owner: str | None = None,
               webhook_url: str | None = None, priority: RequestedPriority = None) -> tuple[JobRecord, int]:
        """Validate the upload (format, size, pages, pixels: errors are 4xx), store it and queue the job's split
        task (built by `message`) at its priority (its page tasks inherit it); returns the job and its page
        count."""
        enforce_quotas(self.settings, self.jobs.redis, owner)
        doc = load_document(data, self.settings.documents, options.page_range)
        job_id = new_job_id()
        # The upload first: the split task reads it. A Redis drop right after leaves only a blob that expires.
        self.blobs.set(DOC_KEY.format(job_id), data, ex=self.settings.ttls.job_s)
        queue = self.settings.queues.ocr
        level = job_priority(self.settings.priorities, priority, owner)
        payload = OCRTask(job_id=job_id, options=options).model_dump(mode="json")
        record = self.jobs.create("ocr", owner=owner, job_id=job_id, progress={"done": 0, "total": doc.page_count},
                                  enqueue=(queue_list(queue, level), message(payload, queue, level)),
                                  webhook_url=webhook_url, priority=level)
        return record, doc.page_count

    # -- worker side ----------------------------------------------------------------------------------------
    def start(self, job_id: str, options: OCROptions) -> int | None:
        """queued → running; the number of pages to fan out, or None when the job is not ours to run.

        A split delivered again takes the job over if its worker died before fanning the pages out; once they
        are fanned out there is nothing to do. While the first split is still at it, this copy waits for it
        (a few seconds at most; never for the pages, which may need this very pool process)."""
        record = self.jobs.get(job_id)
        split_done = SPLIT_KEY.format(job_id)
        while True:
            attempt, before = self.jobs.claim(job_id, self.worker)[:2]
            if before != "busy" or self.jobs.redis.exists(split_done):
                break
            time.sleep(BUSY_POLL_S)
        if not attempt:
            log.info("job=%s skipped: already %s", job_id, before)
            return None
        if attempt > 1 and self.jobs.redis.exists(split_done):
            log.warning("job=%s attempt %d: pages were fanned out already", job_id, attempt)
            return None
        if attempt == 1:
            observe_started(record)
        try:
            doc = self.document(job_id, options)
        except MaoOCRError as exc:
            self.fail(job_id, exc)
            return None
        self._progress(job_id, self.jobs.redis.scard(PAGES_DONE_KEY.format(job_id)), doc.page_count)
        return doc.page_count

    def fanned_out(self, job_id: str) -> None:
        self.jobs.redis.set(SPLIT_KEY.format(job_id), 1, ex=self.settings.ttls.job_s)

    def run_page(self, job_id: str, options: OCROptions, index: int,
                 decided: PageDecision | None = None) -> PageResult | PageHandOff:
        """One page on the OCR worker (PP-OCR, CPU): its text layer, or analysis, selection and OCR. With
        `hand_off_models`, a step that waits on a model is handed off instead (a PageHandOff for
        `run_page_models`), so no OCR process waits on a model. `decided`: the decision made there."""
        from maoocr.pipeline import page as steps_of

        def body(doc: LoadedDocument, steps: PageSteps, start: float) -> PageResult | PageHandOff:
            image = doc.render_page(index)
            number = doc.page_numbers[index]
            decision = decided
            if decision is None:
                layer = doc.text_layer(index) if doc.format == "pdf" else None
                used, note = steps_of.layer_verdict(layer, options)
                if used:
                    return steps_of.text_layer_result(image, layer, index, number, options, steps, start)
                if steps.model_decides and self._can_hand_off():
                    return PageHandOff(note=note)
                decision = steps_of.decide_page(image, doc.page_dpi(index), options, self._resources(), steps, note)
            ocr = None
            if decision.strategy == "vlm":
                if steps.has_vlm and self._can_hand_off():
                    params, size = steps.engine_for("vlm").question(steps_of.upright(image, decision.analysis))
                    return PageHandOff(decision=decision, vlm_job=self.generate.send(params), vlm_sent_at=time.time(),
                                       page_size=size, page=number)
                ocr, decision = steps_of.read_with_vlm(image, decision, steps)  # in this process
            if ocr is None:
                ocr = steps_of.read_with_ppocr(image, decision, steps)
            return steps_of.page_result(ocr, index, number, options, decision, start)

        return self._run_step(job_id, options, index, body)

    def run_page_models(self, job_id: str, options: OCROptions, index: int,
                        hand_off: PageHandOff) -> PageResult | PageDecision:
        """The model steps of a page (model-steps worker, one thread per page): the analysis and selection when
        they ask a model, then the VLM's reading. A page left for PP-OCR (chosen so, or the VLM failed) comes back
        as the PageDecision that `run_page` reads it by."""
        from maoocr.pipeline import page as steps_of

        if hand_off.vlm_job is not None and hand_off.decision is not None:  # only waits: no document to load
            return self._run_step(job_id, options, index, lambda doc, steps, start: self._collect_vlm(
                hand_off, hand_off.decision, steps, index, options, start), page_number=hand_off.page)

        def body(doc: LoadedDocument, steps: PageSteps, start: float) -> PageResult | PageDecision:
            image = doc.render_page(index)
            decision = hand_off.decision or steps_of.decide_page(image, doc.page_dpi(index), options,
                                                                 self._resources(), steps, hand_off.note)
            if decision.strategy != "vlm":
                return decision
            ocr, decision = steps_of.read_with_vlm(image, decision, steps)
            if ocr is None:
                return decision
            return steps_of.page_result(ocr, index, doc.page_numbers[index], options, decision, start)

        return self._run_step(job_id, options, index, body)

    def _collect_vlm(self, hand_off: PageHandOff, decision: PageDecision, steps: PageSteps, index: int,
                     options: OCROptions, start: float) -> PageResult | PageDecision:
        """The answer to the VLM job the OCR process sent, within what is left of its time limit."""
        from maoocr.pipeline import page as steps_of

        vlm = steps.engine_for("vlm")

        def since_sent_s() -> float:
            return time.time() - hand_off.vlm_sent_at

        try:
            result = self.generate.collect(hand_off.vlm_job, vlm.model, vlm.timeout_s - since_sent_s())
            ocr = vlm.reading(result, hand_off.page_size, since_sent_s() * 1000)
        except Exception as exc:  # whatever went wrong with the VLM, PP-OCR can still read the page
            return steps_of.vlm_fell_back(decision, exc, since_sent_s() * 1000)
        return steps_of.page_result(ocr, index, hand_off.page, options, decision, start)

    def _run_step(self, job_id: str, options: OCROptions, index: int, body, page_number: int | None = None):
        """Runs one leg of a page; any failure becomes a failed page with its reason, never a failed job. A final
        page result is counted towards the job's progress. With `page_number` the leg needs no document: it is
        not loaded (`body` gets None)."""
        number = page_number or index + 1
        began = time.monotonic()
        try:
            doc = None
            if page_number is None:
                doc = self.document(job_id, options)
                number = doc.page_numbers[index]
            outcome = body(doc, self._page_steps(), time.perf_counter())
        except MaoOCRError as exc:
            outcome = failed_page(index, number, exc.code, exc.message)
        except Exception as exc:  # one bad page must not take the document down
            log.exception("job=%s page=%d failed", job_id, number)
            outcome = failed_page(index, number, "page_failed", f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, PageResult):
            self._page_done(job_id, outcome, began)
        return outcome

    def _can_hand_off(self) -> bool:
        """Whether a model-steps worker is alive (looked up at most every few seconds). Without one, this process
        runs the model steps itself, waiting on the model, rather than leave pages on a queue no one serves."""
        if not self.hand_off_models or not isinstance(self.generate, QueuedGeneration):
            return False
        looked_at, alive = self._models_worker
        if time.monotonic() - looked_at > MODELS_WORKER_RECHECK_S:
            queue = self.settings.queues.ocr_models
            alive = any(w.get("queue") == queue for w in live_workers(self.jobs.redis))
            if not alive:
                log.warning("no model-steps worker (queue %s) is alive: this OCR process waits on the model", queue)
            self._models_worker = (time.monotonic(), alive)
        return alive

    def _page_steps(self) -> PageSteps:
        # Imported here: the API process uses this class to accept uploads and must not load OpenCV or ONNX.
        from maoocr.pipeline.steps import build_steps

        with self._lock:
            if self._steps is None:  # built in the process that uses it (prefork children, not the parent)
                self._steps = build_steps(self.settings, self.generate, self.engine_threads,
                                          structure=not self.models_only)
                if self.engine_for is not None:
                    self._steps.engine_for = self.engine_for
            return self._steps

    def _resources(self):
        from maoocr.pipeline.resources import read_resources

        return read_resources(self.jobs.redis, self.settings)

    def _page_done(self, job_id: str, result: PageResult, began: float) -> None:
        PAGES_PROCESSED.labels(result.status, result.strategy or "none").inc()
        PAGE_SECONDS.labels(result.strategy or "none").observe(time.monotonic() - began)
        key = PAGES_DONE_KEY.format(job_id)
        with self.jobs.redis.pipeline() as pipe:  # counted in Redis: pages finish on many workers at once
            pipe.sadd(key, result.index)
            pipe.expire(key, self.settings.ttls.job_s)
            pipe.scard(key)
            done = int(pipe.execute()[2])
        total = int((self.jobs.get(job_id).progress or {}).get("total", 0))
        self._progress(job_id, done, total)

    def finish(self, job_id: str, pages: list[PageResult]) -> None:
        record = self.jobs.get(job_id)
        fmt = self._docs[job_id].format if job_id in self._docs else self._stored_format(job_id)
        pages = list({page.index: page for page in pages}.values())  # a page delivered twice is one page
        result = assemble(fmt, pages)
        moved, before = self.jobs.transition(job_id, ("running",), "succeeded", result=result.model_dump(mode="json"),
                                             progress={"done": len(pages), "total": len(pages)})
        if moved or not self.streams.ended(job_id):  # an assemble run twice ends the stream once
            self.streams.append([StreamChunk(job_id=job_id, event="end", finished=True,
                                             finish_reason="succeeded" if moved else before)])
        self.blobs.delete(DOC_KEY.format(job_id))
        self._docs.pop(job_id, None)
        log.info("job=%s assembled %d pages (%s)", job_id, len(pages), record.status)
        if moved:
            observe_finished(self.jobs.get(job_id))

    def _stored_format(self, job_id: str) -> str:
        """The upload's format from its first bytes, for a process that assembles pages it never parsed."""
        try:
            return sniff_format(self.blobs.getrange(DOC_KEY.format(job_id), 0, 1023) or b"")
        except MaoOCRError:
            return "unknown"

    def fail(self, job_id: str, exc: BaseException) -> None:
        fields = error_fields(exc)
        moved, before = self.jobs.transition(job_id, ("queued", "running"), "failed", **fields)
        if moved or not self.streams.ended(job_id):
            self.streams.append([StreamChunk(job_id=job_id, event="end", finished=True,
                                             finish_reason="error" if moved else before,
                                             error=fields["error"] if moved else None)])
        self.blobs.delete(DOC_KEY.format(job_id))
        if moved:
            observe_finished(self.jobs.get(job_id))

    def document(self, job_id: str, options: OCROptions) -> LoadedDocument:
        """The job's document, parsed once per process (pages of one job tend to land on the same worker)."""
        with self._lock:
            doc = self._docs.get(job_id)
            if doc is None:
                data = self.blobs.get(DOC_KEY.format(job_id))
                if data is None:
                    raise MaoOCRError("the uploaded document expired before it was processed",
                                      code="document_expired")
                doc = load_document(data, self.settings.documents, options.page_range)
                self._docs[job_id] = doc
                while len(self._docs) > 4:
                    self._docs.popitem(last=False)
            return doc

    def _progress(self, job_id: str, done: int, total: int) -> None:
        progress = {"done": done, "total": total}
        moved, _ = self.jobs.transition(job_id, ("running",), "running", progress=progress)
        if moved:  # nothing after a job's end chunk
            self.streams.append([StreamChunk(job_id=job_id, event="progress", progress=progress)])


def failed_page(index: int, page: int, code: str, message: str) -> PageResult:
    return PageResult(index=index, page=page, status="failed", error=JobError(code=code, message=message))
