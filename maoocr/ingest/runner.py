"""Send every entry of a source to the MaoOCR API with bounded concurrency, retries and resume; one JSON line each."""

from __future__ import annotations

import contextlib
import json
import os
import random
import stat
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from maoocr.ingest.archive import Entry, IngestLimits, Refused, open_source

DEFAULT_API_URL = "http://127.0.0.1:8000"
Status = Literal["succeeded", "failed", "rejected", "refused", "error"]
STATUSES: tuple[str, ...] = ("succeeded", "failed", "rejected", "refused", "error")
# Worth another try: the server is busy, overloaded or restarting. 408/425 are "come back later" too.
TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


def default_api_url() -> str:
    return os.environ.get("MAOOCR_API_URL", DEFAULT_API_URL)


class IngestConfig(BaseModel):
    """How to talk to the API. Backoffs double from `backoff_s` with jitter, capped at `backoff_max_s`."""

    model_config = ConfigDict(extra="forbid")

    api_url: str = Field(default_factory=default_api_url)
    api_key: str | None = Field(default_factory=lambda: os.environ.get("MAOOCR_API_KEY") or None, repr=False,
                                description="Sent as 'Authorization: Bearer <key>' (default: $MAOOCR_API_KEY).")
    concurrency: int = Field(4, ge=1, le=64)
    max_attempts: int = Field(5, ge=1, description="Uploads per file, and consecutive failed polls per job.")
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    poll_interval_s: float = Field(0.25, gt=0, description="First status poll; grows 1.5x up to the max.")
    poll_max_interval_s: float = Field(2.0, gt=0)
    job_timeout_s: float = Field(3600.0, gt=0, description="Give up waiting on one job after this long.")
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(120.0, gt=0)
    form: dict[str, str] = Field(default_factory=dict, description=(
        "Extra form fields: strategy, pages, output, priority (default 'bulk': behind interactive requests)."))
    max_files: int | None = Field(None, ge=0, description="Send at most this many files, then stop.")
    progress: bool = True


class IngestRecord(BaseModel):
    """One output line. `result` for succeeded files, `error` for the rest."""

    path: str
    job_id: str | None = None
    status: Status
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    seconds: float = 0.0

    def to_line(self) -> str:
        data = self.model_dump()
        for key in ("result", "error"):
            if data[key] is None:
                del data[key]
        # ASCII: tar names that are not UTF-8 arrive as lone surrogates, which only escaped JSON can carry.
        return json.dumps(data)


def last_records(out_path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The last line of each path in an earlier output, in the order paths first appear; unreadable lines (e.g.
    half-written by a killed run) are skipped."""
    last: dict[str, dict[str, Any]] = {}
    try:
        with open(out_path, "rb") as lines:
            for line in lines:
                try:
                    row = json.loads(line)
                except ValueError:  # UnicodeDecodeError included
                    continue
                if isinstance(row, dict) and isinstance(row.get("path"), str):
                    last[row["path"]] = row  # a dict keeps a key where it first went in: first-appearance order
    except FileNotFoundError:
        pass
    return last


def succeeded_paths(out_path: str | os.PathLike[str]) -> set[str]:
    """Paths whose last line in an earlier output says succeeded."""
    return {path for path, row in last_records(out_path).items() if row.get("status") == "succeeded"}


def compact(out_path: str | os.PathLike[str]) -> None:
    """Rewrite the output as the last line of each path, atomically: a reader or a crash sees the old file or
    the new one, never a mix (the temporary file is in the same folder so that os.replace is a rename)."""
    rows = last_records(out_path)
    target = Path(out_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.writelines(json.dumps(row).encode() + b"\n" for row in rows.values())
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileNotFoundError):  # mkstemp makes 0600 files; keep the mode the user had
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _reattach(row: dict[str, Any] | None) -> tuple[str, int] | None:
    """(job id, uploads) of a job accepted by an earlier run whose outcome was never collected (the run was
    interrupted, timed out or lost the API while polling): waiting on it again costs no second OCR."""
    if row is None or row.get("status") != "error" or not isinstance(row.get("job_id"), str):
        return None
    error = row.get("error")
    if isinstance(error, dict) and error.get("code") == "job_lost":  # the server no longer has it
        return None
    attempts = row.get("attempts")
    return row["job_id"], attempts if isinstance(attempts, int) else 0


class _Output:
    """Append-only JSONL, one flushed line per finished file; only the calling thread writes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.file = open(path, "a+b")  # noqa: SIM115 — closed in close()
        self.file.seek(0, os.SEEK_END)
        if self.file.tell():
            self.file.seek(-1, os.SEEK_END)
            if self.file.read(1) != b"\n":
                self.file.write(b"\n")  # a run killed mid-line: keep its fragment on a line of its own

    def write(self, record: IngestRecord) -> None:
        self.file.write(record.to_line().encode() + b"\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class _Client:
    """Upload one file and wait for its job; every exit becomes an IngestRecord, never an exception."""

    def __init__(self, config: IngestConfig, stop: threading.Event) -> None:
        self.config = config
        self.api = config.api_url.rstrip("/")
        self.stop = stop
        self.local = threading.local()
        self.timeout = (config.connect_timeout_s, config.read_timeout_s)

    @property
    def session(self) -> requests.Session:
        # requests.Session is not thread-safe: one per worker thread, reused for its keep-alive connections.
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            if self.config.api_key:
                self.local.session.headers["Authorization"] = f"Bearer {self.config.api_key}"
        return self.local.session

    def backoff(self, attempt: int, response: requests.Response | None = None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.config.backoff_max_s)
        # Full jitter keeps N threads that failed together from retrying together.
        base = min(self.config.backoff_s * 2 ** (attempt - 1), self.config.backoff_max_s)
        return base * random.uniform(0.5, 1.0)

    def send(self, name: str, data: bytes, accepted: tuple[str, int] | None = None) -> IngestRecord:
        """OCR one file. `accepted` is (job id, uploads) of its job from an earlier run: that job is waited on,
        and the file uploaded only if the server no longer has it."""
        started = time.monotonic()
        record = self._await(name, *accepted, started) if accepted else None
        if record is None or _code(record) == "job_lost":
            submitted = self._submit(name, data)
            record = self._await(name, *submitted, started) if isinstance(submitted, tuple) else submitted
        record.seconds = round(time.monotonic() - started, 3)
        return record

    def _submit(self, name: str, data: bytes) -> tuple[str, int] | IngestRecord:
        """(job id, uploads it took), or the record of a file that will not get a job."""
        last = ""
        for attempt in range(1, self.config.max_attempts + 1):
            response = None
            try:
                response = self.session.post(f"{self.api}/v1/documents", data={"priority": "bulk", **self.config.form},
                                             files={"file": (name.rsplit("/", 1)[-1], data)}, timeout=self.timeout)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 202:
                    try:
                        return _job_id(response), attempt
                    except ValueError as exc:
                        last = f"unexpected reply to the upload: {exc}"
                elif response.status_code in TRANSIENT_HTTP:
                    last = f"HTTP {response.status_code}: {_error(response)['message']}"
                elif response.status_code == 401:  # the key's fault, not the file's: a re-run with a key resends it
                    return _gave_up(name, "unauthorized", f"HTTP 401: {_error(response)['message']}", attempt)
                else:
                    error = {**_error(response), "http_status": response.status_code}
                    return IngestRecord(path=name, status="rejected", error=error, attempts=attempt)
            if attempt < self.config.max_attempts and self.stop.wait(self.backoff(attempt, response)):
                return _gave_up(name, "interrupted", "the run was interrupted", attempt)
        return _gave_up(name, "unavailable", f"upload failed {self.config.max_attempts} times; last: {last}",
                        self.config.max_attempts)

    def _await(self, name: str, job_id: str, attempts: int, started: float) -> IngestRecord:
        interval = self.config.poll_interval_s
        failures = 0
        last = ""
        while True:
            if self.stop.wait(interval):
                return _gave_up(name, "interrupted", "the run was interrupted", attempts, job_id)
            interval = min(interval * 1.5, self.config.poll_max_interval_s)
            if time.monotonic() - started > self.config.job_timeout_s:
                return _gave_up(name, "timeout", f"job not finished after {self.config.job_timeout_s:.0f} s",
                                attempts, job_id)
            response = None
            try:
                response = self.session.get(f"{self.api}/v1/jobs/{job_id}", timeout=self.timeout)
                if response.status_code == 200:
                    job = response.json()
                    failures = 0
                    if job.get("status") in ("succeeded", "failed", "cancelled"):
                        return _finished(name, job_id, job, attempts)
                    continue
                if response.status_code not in TRANSIENT_HTTP:
                    # 404: the record expired or Redis lost it; sending the file again is the cure. Any other
                    # refusal (a key) says nothing of the job: the line keeps its id for a later run to wait on.
                    code = "job_lost" if response.status_code == 404 else "poll_refused"
                    return _gave_up(name, code, f"HTTP {response.status_code} polling the job: "
                                    f"{_error(response)['message']}", attempts, job_id)
                last = f"HTTP {response.status_code}: {_error(response)['message']}"
            except (requests.RequestException, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            failures += 1
            if failures >= self.config.max_attempts:
                return _gave_up(name, "unavailable", f"polling failed {failures} times in a row; last: {last}",
                                attempts, job_id)
            interval = max(interval, self.backoff(failures, response))


def _job_id(response: requests.Response) -> str:
    body = response.json()
    job_id = body.get("job_id") if isinstance(body, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"no job_id in {response.text[:200]!r}")
    return job_id


def _error(response: requests.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
        return {"code": str(error["code"]), "message": str(error["message"])}
    except (ValueError, KeyError, TypeError):
        return {"code": f"http_{response.status_code}", "message": response.text[:500] or response.reason}


def _code(record: IngestRecord) -> str | None:
    return record.error.get("code") if record.error else None


def _gave_up(name: str, code: str, message: str, attempts: int, job_id: str | None = None) -> IngestRecord:
    return IngestRecord(path=name, job_id=job_id, status="error", error={"code": code, "message": message},
                        attempts=attempts)


def _finished(name: str, job_id: str, job: dict[str, Any], attempts: int) -> IngestRecord:
    if job["status"] == "succeeded":
        return IngestRecord(path=name, job_id=job_id, status="succeeded", result=job.get("result") or {},
                            attempts=attempts)
    error = job.get("error") or {"code": job["status"], "message": f"the job was {job['status']}"}
    return IngestRecord(path=name, job_id=job_id, status="failed", error=error, attempts=attempts)


def _refused(entry: Entry, reason: str) -> IngestRecord:
    return IngestRecord(path=entry.name, status="refused", error={"code": "refused", "message": reason})


def ingest(source: str | os.PathLike[str], out: str | os.PathLike[str], config: IngestConfig | None = None,
           limits: IngestLimits | None = None) -> dict[str, int]:
    """Ingest every entry of `source` into `out`, one JSON line per file; returns counts per status.

    During the run each finished file is appended as one flushed line, so a crash loses nothing written. When the
    run ends, normally or by Ctrl-C, `out` is rewritten atomically to the last line of each path, in the order
    paths first appeared, dropping unreadable (half-written) lines; a run killed outright leaves duplicate lines
    that the next run compacts.

    Resuming from `out`: files whose last line says succeeded are skipped (counted as "skipped"); a file whose
    last line is an error with a job id (interrupted, timed out, or the API lost while polling) has its job
    waited on again, and is uploaded again only if the server no longer has that job. An interrupted run (Ctrl-C)
    writes what finished, marks what was in flight as errors with their job ids and sets "interrupted" to 1.
    """
    config = config or IngestConfig()
    previous = last_records(out)
    counts: Counter[str] = Counter({status: 0 for status in (*STATUSES, "skipped")})
    stop = threading.Event()
    client = _Client(config, stop)
    started = time.monotonic()
    pending: dict[Future[IngestRecord], str] = {}

    with open_source(source, limits) as src, tqdm(total=src.total, unit="file", file=sys.stderr,
                                                   disable=not config.progress, dynamic_ncols=True) as bar:
        output = _Output(out)
        pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="ingest")

        def finish(record: IngestRecord) -> None:
            output.write(record)
            counts[record.status] += 1
            bar.update(1)
            bar.set_postfix({k: v for k, v in counts.items() if v}, refresh=False)

        def drain(block: bool) -> None:
            finished = wait(pending, return_when=FIRST_COMPLETED).done if block else set(pending)
            for future in finished:
                name = pending.pop(future)
                if future.cancelled():
                    continue  # never started: no line, so a resumed run sends it
                if future.exception() is not None:  # a bug, not the file's fault: keep it re-sendable
                    finish(_gave_up(name, "internal", repr(future.exception()), 0))
                else:
                    finish(future.result())

        try:
            sent = 0
            for entry in src.entries():
                earlier = previous.get(entry.name)
                if earlier is not None and earlier.get("status") == "succeeded":
                    counts["skipped"] += 1
                    bar.update(1)
                    continue
                if entry.refusal is not None:
                    finish(_refused(entry, entry.refusal))
                    continue
                if config.max_files is not None and sent >= config.max_files:
                    break
                # Read only when a worker is free: at most `concurrency` files are held in memory.
                while len(pending) >= config.concurrency:
                    drain(block=True)
                try:
                    data = entry.read()
                except Refused as exc:
                    finish(_refused(entry, exc.reason))
                    continue
                pending[pool.submit(client.send, entry.name, data, _reattach(earlier))] = entry.name
                sent += 1
            while pending:
                drain(block=True)
        except KeyboardInterrupt:
            stop.set()  # in-flight uploads and polls return at their next wait, as "interrupted" errors
            pool.shutdown(wait=True, cancel_futures=True)
            drain(block=False)
            counts["interrupted"] = 1
        except BaseException:
            stop.set()  # a bug in this loop: let the workers wind down rather than finish every job
            raise
        finally:
            pool.shutdown(wait=True)
            output.close()
    compact(out)

    summary = dict(counts)
    elapsed = time.monotonic() - started
    files = sum(summary[s] for s in STATUSES)
    parts = ", ".join(f"{summary[s]} {s}" for s in (*STATUSES, "skipped") if summary[s])
    print(f"ingest: {files} files in {elapsed:.1f} s ({parts or 'nothing to do'})"
          f"{' — interrupted' if summary.get('interrupted') else ''}; one line per file in {Path(out)}",
          file=sys.stderr)
    return summary


def exit_code(summary: dict[str, int]) -> int:
    """0 when every file succeeded or was refused/rejected for a reason; 1 when some are left to re-send."""
    if summary.get("interrupted"):
        return 130
    return 1 if summary.get("error") or summary.get("failed") else 0
