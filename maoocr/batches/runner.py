"""The batch thread of each API process: it collects the answers of line jobs that ended, and works on the batches it
leases (queues their lines, stops them when cancelled or expired, sweeps for vanished jobs, finalizes).

Exactly once, whatever dies: a line's job has the same id each time it is queued (queueing it again is a no-op),
the step that ends a job puts it in the due set, a runner leases it from there, and the step that records the
answer does nothing for a line answered already. A runner that dies leaves its leases to run out; any runner of
any API process then takes over, from the cursor the batch keeps."""

from __future__ import annotations

import logging
import threading
import time

import redis

from maoocr.batches.answers import bad_line_answer, job_answer, stopped_answer
from maoocr.batches.lines import BadLine, custom_id_of, parse_line
from maoocr.batches.store import BatchState, BatchStore, line_job_id, split_line_job_id
from maoocr.config import Settings
from maoocr.errors import JobNotFound, MaoOCRError
from maoocr.generation.submit import submit_generation
from maoocr.protocol.batches import ENDED
from maoocr.protocol.jobs import TERMINAL
from maoocr.store.due import DueSet
from maoocr.store.jobs import JobStore
from maoocr.store.keys import BATCHES_DUE_KEY, JOB_KEY
from maoocr.store.streams import StreamStore
from maoocr.tasks import TaskMessage, generation_message

log = logging.getLogger(__name__)

POLL_S = 0.5
COLLECT_AT_ONCE = 64  # ended line jobs leased per round
BATCHES_AT_ONCE = 4  # batches leased per round
ENDING_POLL_S = 1.0  # how often a cancelled or expired batch is checked until its last line is accounted for


class BatchRunner:
    def __init__(self, settings: Settings, jobs: JobStore, streams: StreamStore, batches: BatchStore,
                 message: TaskMessage = generation_message) -> None:
        self.settings = settings
        self.limits = settings.batches
        self.jobs = jobs
        self.streams = streams
        self.batches = batches
        self.message = message
        self.due = DueSet(jobs.redis, BATCHES_DUE_KEY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maoocr-batches", daemon=True)

    def start(self) -> BatchRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.collect()
                busy = self.work() or busy
            except redis.RedisError as exc:  # an outage: leases run out, and the work is taken up again
                log.debug("batches: redis unavailable: %s", exc)
                busy = False
            except Exception:
                log.exception("batches: round failed")
                busy = False
            if not busy:
                self._stop.wait(POLL_S)

    # Collecting answers.

    def collect(self) -> bool:
        """Answer the lines whose jobs ended; True when there may be more."""
        job_ids = self.due.lease(self.limits.lease_s, COLLECT_AT_ONCE)
        for job_id in job_ids:
            self.collect_one(job_id)
        return len(job_ids) == COLLECT_AT_ONCE

    def collect_one(self, job_id: str) -> None:
        line = split_line_job_id(job_id)
        context = line and self.batches.line_context(*line)
        try:
            record = self.jobs.get(job_id)
        except JobNotFound:  # expired: the batch's sweep queues the line again
            record = None
        if not line or not context or record is None or not record.terminal:
            self.due.remove(job_id)  # nothing to answer (a job that runs again is due again when it ends)
            return
        batch_id, index = line
        endpoint, end, raw = context
        answer = job_answer(batch_id, index, custom_id_of(raw), endpoint, record, end)
        if self.batches.answer(batch_id, index, answer, job_id):
            log.info("job=%s batch=%s line=%d answered: %s", job_id, batch_id, index, answer.part)

    # Working on batches.

    def work(self) -> bool:
        """Work on the batches due now; True when one has more to do at once."""
        more = False
        for batch_id in self.batches.active.lease(self.limits.lease_s, BATCHES_AT_ONCE):
            try:
                more = self.work_on(batch_id) or more
            except redis.RedisError:  # an outage ends the round (see _run)
                raise
            except Exception:  # its lease runs out and it is tried again
                log.exception("batch=%s pass failed", batch_id)
        return more

    def work_on(self, batch_id: str) -> bool:
        state = self.batches.state(batch_id)
        if state is None or state.status in ENDED:
            self.batches.active.remove(batch_id)
            return False
        now = time.time()
        if state.status == "validating":
            self.batches.move(batch_id, ("validating",), "in_progress", in_progress_at=int(now))
        if state.end is None and now >= state.expires_at:
            self.batches.expire(batch_id)
            state = self.batches.state(batch_id) or state
        if state.answered >= state.total:
            self.finalize(state)
            return False
        if state.end is not None:
            self.wind_down(state)
            self.batches.active.reschedule(batch_id, time.time() + ENDING_POLL_S)
            return False
        if state.cursor < state.total:
            self.submit_chunk(state)
            self.batches.active.reschedule(batch_id, 0)
            return True
        self.sweep(state)
        self.batches.active.reschedule(batch_id, min(time.time() + self.limits.sweep_s, state.expires_at))
        return False

    def submit_chunk(self, state: BatchState) -> None:
        """Queue the next lines from the cursor on, then move the cursor past them."""
        stop = min(state.total, state.cursor + self.limits.submit_chunk)
        for offset, raw in enumerate(self.batches.lines(state.id, state.cursor, stop)):
            self.submit_line(state, state.cursor + offset, raw)
        self.batches.advance(state.id, stop)

    def submit_line(self, state: BatchState, index: int, raw: str) -> None:
        """Queue one line as a job at bulk priority, or answer why it cannot run."""
        try:
            request = parse_line(raw, state.endpoint, self.settings)
            holder = self.batches.claim_custom_id(state.id, request.custom_id, index)
            if holder != index:
                raise BadLine("duplicate_custom_id", f"custom_id {request.custom_id!r} is already used by the "
                                                     f"request on line {holder + 1}", request.custom_id)
            try:
                submit_generation(self.settings, self.jobs, request.params, self.message, state.owner, bulk=True,
                                  job_id=line_job_id(state.id, index), batch_id=state.id)
            except MaoOCRError as exc:  # the server's own checks: unknown model, max_tokens above the limits, ...
                raise BadLine(exc.code, exc.message, request.custom_id, exc.http_status) from None
        except BadLine as bad:
            self.batches.answer(state.id, index, bad_line_answer(state.id, index, bad.code, bad.message,
                                                                 bad.custom_id, bad.http_status))

    def sweep(self, state: BatchState) -> None:
        """Lines queued but unanswered: a job that vanished (its record expired) is queued again; one that ended
        is due (again) to be collected."""
        for index, status in self._unanswered(state):
            if status is None:
                self.submit_line(state, index, self.batches.lines(state.id, index, index + 1)[0])
            elif status in TERMINAL:
                self.due.add(line_job_id(state.id, index))

    def wind_down(self, state: BatchState) -> None:
        """A cancelled or expired batch: lines never queued are answered as stopped, and queued ones cancelled
        (their jobs, once ended, are collected as any other)."""
        assert state.end is not None
        for start in range(state.cursor, state.total, self.limits.submit_chunk):
            stop = min(state.total, start + self.limits.submit_chunk)
            for offset, raw in enumerate(self.batches.lines(state.id, start, stop)):
                index = start + offset
                self.batches.answer(state.id, index, stopped_answer(state.id, index, custom_id_of(raw), state.end))
            self.batches.advance(state.id, stop)
        for index, status in self._unanswered(state):
            job_id = line_job_id(state.id, index)
            if status is None:
                raw = self.batches.lines(state.id, index, index + 1)
                answer = stopped_answer(state.id, index, custom_id_of(raw[0]) if raw else None, state.end)
                self.batches.answer(state.id, index, answer)
            elif status in TERMINAL:
                self.due.add(job_id)
            else:
                try:
                    self.jobs.cancel(job_id, self.streams)
                except JobNotFound:
                    pass  # expired just now: the next pass answers it

    def _unanswered(self, state: BatchState) -> list[tuple[int, str | None]]:
        """(index, its job's status or None when the record is gone) of each queued line not answered yet."""
        answered = self.batches.answered(state.id)
        waiting = [index for index in range(min(state.cursor, state.total)) if index not in answered]
        with self.jobs.redis.pipeline(transaction=False) as pipe:
            for index in waiting:
                pipe.hget(JOB_KEY.format(line_job_id(state.id, index)), "status")
            statuses = pipe.execute()
        return list(zip(waiting, statuses, strict=True))

    def finalize(self, state: BatchState) -> None:
        if state.end is None:
            self.batches.move(state.id, ("validating", "in_progress"), "finalizing", finalizing_at=int(time.time()))
        if self.batches.finalize(state):
            log.info("batch=%s ended %s: %d lines", state.id, state.end or "completed", state.total)
