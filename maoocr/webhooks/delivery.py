"""Sends due webhooks: a thread in each API process leases due jobs from Redis and POSTs each job's record.

At least once: a job is due from the step that ends it; a sender leases it (its due time moves past the attempt's
time limit) and removes it only once delivered or given up, so a sender that dies mid-attempt leaves it to another
after the lease. Receivers deduplicate on X-MaoOCR-Delivery (the job id). Retries wait `backoff_s`, doubling."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis
import requests

from maoocr.config import WebhookSettings
from maoocr.errors import MaoOCRError
from maoocr.store.due import DueSet
from maoocr.store.jobs import JobStore
from maoocr.store.keys import WEBHOOKS_DUE_KEY
from maoocr.webhooks.signing import SIGNATURE_HEADER, sign
from maoocr.webhooks.targets import check_webhook_url

log = logging.getLogger(__name__)

POLL_S = 0.5
SENDERS = 8  # attempts in flight per process: one slow receiver does not hold up the others
# Bookkeeping on the record, not part of what the receiver is told.
_DELIVERY_FIELDS = {"webhook_status", "webhook_attempts", "webhook_error"}


class WebhookSender:
    def __init__(self, jobs: JobStore, settings: WebhookSettings) -> None:
        assert settings.secret, "webhooks need a secret"
        self.redis = jobs.redis
        self.jobs = jobs
        self.settings = settings
        self.due = DueSet(self.redis, WEBHOOKS_DUE_KEY)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="maoocr-webhook")
        self._thread = threading.Thread(target=self._run, name="maoocr-webhooks", daemon=True)

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        lease_s = self.settings.timeout_s + 30
        while not self._stop.is_set():
            try:
                due = self.due.lease(lease_s, SENDERS)
            except redis.RedisError as exc:  # an outage: try again after the pause
                log.debug("webhooks: lease failed: %s", exc)
                due = []
            for job_id in due:
                self._pool.submit(self._attempt, job_id)
            if len(due) < SENDERS:
                self._stop.wait(POLL_S)

    def _attempt(self, job_id: str) -> None:
        try:
            self._attempt_once(job_id)
        except Exception:  # Redis gone mid-attempt, say: the lease runs out and the job is tried again
            log.warning("job=%s webhook attempt failed", job_id, exc_info=True)

    def _attempt_once(self, job_id: str) -> None:
        try:
            record = self.jobs.get(job_id)
        except MaoOCRError:  # expired with its record: nothing left to tell
            record = None
        if record is None or not record.webhook_url:
            self.due.remove(job_id)
            return
        attempt = (record.webhook_attempts or 0) + 1
        error = self._post(record, attempt)
        # The record first: a sender that dies before the due set changes leaves the job to another (at least once).
        if error is None:
            self.jobs.note_webhook(job_id, "delivered", attempt, None)
            self.due.remove(job_id)
        elif attempt >= self.settings.max_attempts:
            log.warning("job=%s webhook given up after %d attempts: %s", job_id, attempt, error)
            self.jobs.note_webhook(job_id, "failed", attempt, error)
            self.due.remove(job_id)
        else:
            wait = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (attempt - 1))
            self.jobs.note_webhook(job_id, "pending", attempt, error)
            self.due.schedule(job_id, time.time() + wait)

    def _post(self, record, attempt: int) -> str | None:
        """One attempt: None when the receiver took it (2xx), else why not."""
        url = record.webhook_url
        try:
            check_webhook_url(url, self.settings.allow_private)  # again: the name may point elsewhere now
        except MaoOCRError as exc:
            return exc.message
        job = record.model_dump(mode="json", exclude=_DELIVERY_FIELDS)
        body = json.dumps({"event": f"job.{record.status}", "job": job}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "MaoOCR-Webhook/1",
                   "X-MaoOCR-Event": f"job.{record.status}", "X-MaoOCR-Delivery": record.id,
                   "X-MaoOCR-Attempt": str(attempt), SIGNATURE_HEADER: sign(self.settings.secret, body)}
        try:
            # No redirects: a redirect could lead past the target check.
            answer = requests.post(url, data=body, headers=headers, timeout=self.settings.timeout_s,
                                     allow_redirects=False)
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code} from the receiver"
