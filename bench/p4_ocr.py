"""P4: OCR pages/s through the system (upload → API → Redis → OCR worker → result) against the same per-page
work called directly, in the same run.

Direct = `process_page` (complexity analysis, strategy, OCR: what a page task runs) on the already decoded
pages, in a process pool as wide as the OCR worker's prefork pool with the same ONNX threads per engine
(`settings.ocr.concurrency` or the core count; threads = cores // processes), engines built by the same
`maoocr.pipeline.steps.build_steps`. The system's figure also pays for the upload, Redis, Celery, decoding
each page from the TIFF, progress events and assembly: that is what the ratio measures. Only the OCR worker
runs (no LLM worker); the two paths alternate in rounds (each idles while the other runs).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from devtools import docgen
from devtools.processes import (BENCH_LOG_LEVEL, service_env, start_module, start_redis, wait_http, wait_until,
                                write_config)
from maoocr.embedded import free_port


@dataclass
class P4Options:
    documents: int = 2  # uploaded at once
    pages_per_document: int = 6
    rounds: int = 2  # system and direct alternate


def page_mix(count: int) -> list[docgen.Page]:
    makers = (docgen.english_page, docgen.two_column_page, docgen.chinese_page)
    return [makers[i % len(makers)]() for i in range(count)]


def through_system(base_url: str, documents: list[bytes]) -> tuple[float, int]:
    """Upload every document at once and wait for all of them; returns (seconds, pages OCR'd)."""

    def one(data: bytes) -> int:
        reply = requests.post(base_url + "/v1/documents", files={"file": ("pages.tiff", data, "image/tiff")},
                              timeout=60)
        reply.raise_for_status()
        job_id = reply.json()["job_id"]
        with requests.get(f"{base_url}/v1/jobs/{job_id}/events", stream=True, timeout=600) as events:
            for line in events.iter_lines(chunk_size=None):
                if line.startswith(b"data: ") and b'"finished":true' in line:
                    break
        result = requests.get(f"{base_url}/v1/jobs/{job_id}/result", timeout=60).json()
        assert all(p["status"] == "succeeded" for p in result["pages"]), result
        return len(result["pages"])

    with ThreadPoolExecutor(len(documents)) as pool:
        start = time.perf_counter()
        pages = sum(pool.map(one, documents))
        return time.perf_counter() - start, pages


_pages: list = []
_steps = None


def _init_direct(config: str, documents: list[bytes], threads: int) -> None:
    global _steps
    from maoocr.config import load_settings
    from maoocr.documents import load_document
    from maoocr.pipeline.steps import build_steps

    settings = load_settings(config, env={})
    _steps = build_steps(settings, None, threads)  # what an OCR worker process builds for its pages
    for data in documents:  # decoded before the clock starts: direct means the engine's work alone
        doc = load_document(data, settings.documents)
        _pages.extend(doc.render_page(i) for i in range(doc.page_count))


def _direct_page(index: int) -> str:
    from maoocr.pipeline.page import process_page
    from maoocr.pipeline.strategy import ResourceState
    from maoocr.protocol.ocr import OCROptions

    result = process_page(_pages[index], index, index + 1, OCROptions(), ResourceState(), _steps)
    return result.status


class DirectPool:
    """The per-page work in a process pool shaped like the OCR worker's, pages decoded and engines warm."""

    def __init__(self, config: Path, documents: list[bytes], warmup: list[bytes], processes: int,
                 threads: int) -> None:
        context = multiprocessing.get_context("fork")  # Celery's prefork pool forks too
        self.pool = context.Pool(processes, _init_direct, (str(config), warmup + documents, threads))
        self.first = sum(_page_count(d) for d in warmup)
        self.total = sum(_page_count(d) for d in documents)
        assert all(s == "succeeded" for s in self.pool.map(_direct_page, range(self.first), chunksize=1))

    def run(self) -> tuple[float, int]:
        start = time.perf_counter()
        statuses = self.pool.map(_direct_page, range(self.first, self.first + self.total), chunksize=1)
        seconds = time.perf_counter() - start
        assert all(s == "succeeded" for s in statuses)
        return seconds, self.total

    def close(self) -> None:
        self.pool.terminate()


def _page_count(data: bytes) -> int:
    from maoocr.documents import load_document

    return load_document(data).page_count


def run(options: P4Options) -> list[dict]:
    from maoocr.config import load_settings

    work = Path(tempfile.mkdtemp(prefix="maoocr-p4-"))
    pages = page_mix(options.pages_per_document)
    documents = [docgen.tiff_bytes(pages) for _ in range(options.documents)]
    warmup = [docgen.tiff_bytes(page_mix(6))]  # every page kind, more pages than worker processes
    redis_proc, redis_url = start_redis(work / "redis")
    config = write_config(work / "configs", redis_url, model_path="unused: no LLM worker runs in P4",
                          log_level=BENCH_LOG_LEVEL)
    settings = load_settings(config, env={})
    processes = settings.ocr.concurrency or os.cpu_count() or 1
    threads = max(1, (os.cpu_count() or 1) // processes)  # what `maoocr worker --ocr` gives each engine
    env = service_env(config, work / "tmp")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    procs, direct = [], None
    totals = {"system": [0.0, 0], "direct": [0.0, 0]}
    rounds = []
    try:
        procs.append(start_module("ocr-worker", "workers.main", ["--ocr"], env, work / "logs"))
        procs.append(start_module("api", "api.server", ["--host", "127.0.0.1", "--port", str(port)], env,
                                  work / "logs"))
        wait_http(base_url + "/healthz", procs)
        # No LLM worker here, so /readyz stays 503: wait for the OCR worker's heartbeat itself.
        wait_until(lambda: any(w["kind"] == "ocr" for w in requests.get(base_url + "/readyz", timeout=5)
                               .json()["workers"]), procs)
        through_system(base_url, warmup)
        direct = DirectPool(config, documents, warmup, processes, threads)
        # Alternating rounds: the machine is shared and its load drifts; each path gets the same moments.
        for _ in range(options.rounds):
            for name, measure in (("system", lambda: through_system(base_url, documents)), ("direct", direct.run)):
                seconds, pages_done = measure()
                totals[name][0] += seconds
                totals[name][1] += pages_done
                rounds.append({name: round(pages_done / seconds, 3)})
    finally:
        if direct is not None:
            direct.close()
        for proc in reversed(procs):
            proc.stop()
        redis_proc.stop()
    (system_s, system_pages), (direct_s, direct_pages) = totals["system"], totals["direct"]
    system_rate, direct_rate = system_pages / system_s, direct_pages / direct_s
    common = {"documents": options.documents, "pages": system_pages, "rounds": options.rounds,
              "processes": processes,
              "threads_per_engine": threads, "engine": settings.ocr.engine,
              "page_kinds": "english, two-column, chinese"}
    return [
        {"metric": "p4_system_pages_s", "value": round(system_rate, 3), "seconds": round(system_s, 3), **common},
        {"metric": "p4_direct_pages_s", "value": round(direct_rate, 3), "seconds": round(direct_s, 3), **common},
        {"metric": "p4_ocr_ratio", "value": round(system_rate / direct_rate, 3), "goal": ">= 0.9",
         "pages_s_per_round": rounds, **common},
    ]
