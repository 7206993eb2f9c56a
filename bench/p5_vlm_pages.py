"""P5: pages routed to the VLM through the whole system, against the same page images given to the VLM engine
directly.

System: one document of N pages POSTed to /v1/documents with strategy=vlm, timed until its job succeeds (API →
Redis → OCR workers → each page a generation job on the VLM's queue → LLM worker → assembly). Direct: the LLM
worker's engine class with the same settings, loaded in this process as a worker hosts it, given the same page
images (rendered as the OCR worker renders them) as the same chat messages, all N at once. Every answer runs to
max_tokens (`ocr.vlm_ignore_eos`, `ignore_eos`), so both paths make the same tokens. Both engines stay loaded
side by side and run in alternating rounds, never at once. `p5_vlm_pages_ratio` is the system's pages/s over the
direct path's, the median over rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from PIL import Image

from bench.p1_batching import GPU_SHARE
from bench.resident_engine import ResidentEngine
from devtools import docgen
from devtools.processes import BENCH_LOG_LEVEL, Stack, private_stack, write_config

if TYPE_CHECKING:
    from maoocr.documents import DocumentLimits

MODEL = "tiny"  # the name devtools.processes.write_config gives the served model
A4 = (1240, 1754)  # an A4 page at docgen's 150 dpi, the resolution the OCR worker renders PDFs at
POLL_S = 0.1  # GET /v1/jobs/<id> interval while the system path runs
WARM_UP_PAGES = 32  # at most: the first requests pay for kernel and image-shape set-up, not N of them


@dataclass
class P5Options:
    pages: int = 8
    max_tokens: int = 16
    max_side: int | None = None  # page image long side sent to the VLM; None: ocr.vlm_max_side's default
    rounds: int = 2  # measured rounds per path, alternating
    gpu: bool = False
    dummy_vlm: str | None = None  # "qwen2-vl-2b" | "qwen2-vl-7b" with dummy weights (bench.dummy_vlm); None: demo VLM
    max_model_len: int | None = None  # None: 4096 for the dummy Qwen2-VL (~1,500 image tokens a page), else 2048
    system: bool = True  # False: the direct path alone (no stack), e.g. to check the bench itself


@dataclass
class Round:
    seconds: float
    pages: int

    @property
    def rate(self) -> float:
        return self.pages / self.seconds


@dataclass
class Measured:
    direct: list[Round] = field(default_factory=list)
    system: list[Round] = field(default_factory=list)
    timelines: list[dict] = field(default_factory=list)  # per system round: where its time went
    prompt_tokens: int = 0  # of one page, image tokens included (the direct path's count)


def document(count: int, label: str) -> bytes:
    """A PDF of `count` A4 pages of English prose, each titled with `label` and its number, so no two pages (and
    no two rounds) share an image: vLLM's multimodal caches give neither path a head start."""
    docgen.require_fonts()
    pages = []
    for i in range(count):
        text = docgen.render_page(docgen.ENGLISH_PARAGRAPHS * 4, title=f"{label}, page {i + 1} of {count}")
        page = Image.new("RGB", A4, "white")
        page.paste(text.image, (0, 0))  # what runs past the page's foot is cut off
        pages.append(docgen.Page(page, text.lines, text.blocks))
    return docgen.pdf_bytes(pages)


def page_messages(data: bytes, max_side: int, limits: DocumentLimits) -> list:
    """The chat messages the OCR pipeline sends for each page of `data` (maoocr.ocr.vlm_engine.VLMOCREngine), its
    pages rendered as the OCR worker renders them."""
    from maoocr.documents import load_document, paper_rgb
    from maoocr.generation.call import image_question
    from maoocr.ocr.vlm_engine import TRANSCRIBE

    doc = load_document(data, limits)
    return [image_question(paper_rgb(doc.render_page(i)), TRANSCRIBE, max_side) for i in range(doc.page_count)]


async def _all_at_once(engine, messages: list, max_tokens: int) -> list:
    from maoocr.generation.local import collect
    from maoocr.protocol.generation import GenerationParams

    async def one(i: int, page: list):
        params = GenerationParams(model=MODEL, messages=page, max_tokens=max_tokens, temperature=0.0,
                                  ignore_eos=True)
        return await collect(engine, params, f"p5-direct-{i}-{time.monotonic_ns()}")

    return await asyncio.gather(*(one(i, page) for i, page in enumerate(messages)))


def directly(resident: ResidentEngine, messages: list, max_tokens: int) -> tuple[Round, int]:
    """Every page at once to the engine alone: the round, and the prompt tokens of a page (image tokens included)."""
    start = time.perf_counter()
    results = resident.run(_all_at_once(resident.engine, messages, max_tokens))
    seconds = time.perf_counter() - start
    tokens = [r.usage.completion_tokens for r in results]
    if any(t != max_tokens for t in tokens):
        raise RuntimeError(f"direct answers of {tokens} tokens, expected {max_tokens} each")
    return Round(seconds, len(results)), max(r.usage.prompt_tokens for r in results)


def through_system(stack: Stack, data: bytes, pages: int, max_tokens: int) -> tuple[Round, dict]:
    """The document uploaded with strategy=vlm and polled until done: the round, and where its time went."""
    start = time.perf_counter()
    reply = requests.post(stack.base_url + "/v1/documents", files={"file": ("pages.pdf", data, "application/pdf")},
                          data={"strategy": "vlm"}, timeout=300)
    if reply.status_code != 202:
        raise RuntimeError(f"upload refused: {reply.status_code} {reply.text[:500]}")
    job_id = reply.json()["job_id"]
    while True:
        job = requests.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=60).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(POLL_S)
    seconds = time.perf_counter() - start
    if job["status"] != "succeeded":
        raise RuntimeError(f"OCR job {job_id} {job['status']}: {job.get('error')} (logs: {stack.logdir})")
    # A page PP-OCR read instead is not a VLM page: it must fail the run, not count.
    results = job["result"]["pages"]
    off = [(p["page"], p["strategy"], p["strategy_reason"]) for p in results if p["strategy"] != "vlm"]
    if len(results) != pages or off:
        raise RuntimeError(f"{len(results)} of {pages} pages came back; not read by the VLM: {off[:5]} "
                           f"(logs: {stack.logdir})")
    return Round(seconds, pages), timeline(stack.redis_url, job, pages, max_tokens)


def timeline(redis_url: str, job: dict, pages: int, max_tokens: int) -> dict:
    """The OCR job's VLM calls, from the generation job records created during it: that there was one per page,
    each of max_tokens tokens, and when the first was created and the last created, started and finished (seconds
    after the OCR job was created): what the system adds before, between and after the engine's work."""
    import redis

    from maoocr.store.jobs import decode_record
    from maoocr.store.keys import JOB_KEY

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = [key for key in client.scan_iter(JOB_KEY.format("*"), count=1000) if key.count(":") == 2]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        records = [decode_record(raw) for raw in pipe.execute() if raw]
    created = job["created_at"]
    calls = [r for r in records if r.kind == "generation" and created <= r.created_at <= job["finished_at"]]
    tokens = [(r.result or {}).get("usage", {}).get("completion_tokens") for r in calls]
    if len(calls) != pages or any(t != max_tokens for t in tokens):
        raise RuntimeError(f"{len(calls)} VLM calls for {pages} pages, of {sorted(tokens, key=str)[:8]} tokens; "
                           f"expected one per page of {max_tokens}")
    def last(stamps: list[float | None]) -> float:
        return round(max(t or created for t in stamps) - created, 3)

    return {"first_vlm_call_created": round(min(r.created_at for r in calls) - created, 3),
            "last_vlm_call_created": last([r.created_at for r in calls]),
            "last_vlm_call_started": last([r.started_at for r in calls]),
            "last_vlm_call_finished": last([r.finished_at for r in calls]),
            "job_finished": round(job["finished_at"] - created, 3)}


def model_settings(options: P5Options, work: Path) -> tuple[str, dict, str]:
    """The served weights, their settings (both engines), and a name for the output."""
    model = {"model_type": "multimodal", "max_num_seqs": max(64, options.pages),
             "max_model_len": options.max_model_len or (4096 if options.dummy_vlm else 2048)}
    if options.gpu:
        model["gpu_memory_utilization"] = GPU_SHARE  # the worker's engine and the direct one, side by side
    if options.dummy_vlm:
        from bench.dummy_model import tokenizer_dir
        from bench.dummy_vlm import build_dummy_vlm

        path = build_dummy_vlm(work / "model", options.dummy_vlm)
        return str(path), {**model, "load_format": "dummy", "tokenizer": str(tokenizer_dir(path))}, \
            f"{options.dummy_vlm} (dummy weights)"
    from maoocr.engines.demo_vlm import build_demo_vlm

    return str(build_demo_vlm(work / "model")), model, "demo VLM (tiny Idefics3)"


def run(options: P5Options) -> Iterator[dict]:
    from maoocr.config import OCRSettings, load_settings

    work = Path(tempfile.mkdtemp(prefix="maoocr-p5-"))
    max_side = options.max_side or OCRSettings().vlm_max_side
    model_path, model, name = model_settings(options, work)
    common = {"pages": options.pages, "max_tokens": options.max_tokens, "max_side": max_side, "model": name,
              "device": "gpu" if options.gpu else "cpu", "rounds": options.rounds, "page_size": list(A4),
              "warm_up": f"one {min(options.pages, WARM_UP_PAGES)}-page round per path",
              **({"gpu_memory_utilization": GPU_SHARE} if options.gpu else {})}
    if not options.system:
        # Never connected to: the direct path reads only the model's settings from this config.
        config = write_config(work / "configs", "redis://127.0.0.1:1/0", model_path, model, log_level=BENCH_LOG_LEVEL)
        resident = ResidentEngine(config, gpu=options.gpu)
        try:
            measured = measure(None, resident, options, max_side, load_settings(config, env={}).documents)
        finally:
            resident.close()
        yield direct_figure(measured, options, common)
        return
    env = {"MAOOCR_OCR__VLM_MODEL": MODEL, "MAOOCR_OCR__VLM_MAX_TOKENS": str(options.max_tokens),
           "MAOOCR_OCR__VLM_IGNORE_EOS": "true", "MAOOCR_OCR__VLM_MAX_SIDE": str(max_side),
           # A page queued behind the whole document must be waited for, not handed to PP-OCR (that fails the
           # run); within worker.redelivery_timeout_s, which must exceed a page's longest wait on models.
           "MAOOCR_OCR__VLM_TIMEOUT_S": "1800"}
    with private_stack(work, model_path, worker_args=["--gpu", "0"] if options.gpu else ["--cpu"], ocr_worker=True,
                       model=model, env=env, log_level=BENCH_LOG_LEVEL) as stack:
        resident = ResidentEngine(stack.config, gpu=options.gpu)
        try:
            measured = measure(stack, resident, options, max_side, load_settings(stack.config, env={}).documents)
        finally:
            resident.close()
    system, direct = measured.system, measured.direct
    yield {"metric": "p5_vlm_pages_per_s_system", "value": round(total_rate(system), 3),
           "per_round": [round(r.rate, 3) for r in system], "seconds": [round(r.seconds, 3) for r in system],
           "output_tok_s": round(total_rate(system) * options.max_tokens, 1), "timeline_s": measured.timelines,
           "note": "upload to job succeeded, polled every 0.1 s; timeline_s: seconds after the OCR job was created",
           **common}
    yield direct_figure(measured, options, common)
    per_round = [round(s.rate / d.rate, 3) for s, d in zip(system, direct)]
    yield {"metric": "p5_vlm_pages_ratio", "value": round(statistics.median(per_round), 3), "per_round": per_round,
           "overall": round(total_rate(system) / total_rate(direct), 3), **common}


def measure(stack: Stack | None, resident: ResidentEngine, options: P5Options, max_side: int,
            limits: DocumentLimits) -> Measured:
    """Warm-up, then `options.rounds` rounds, each a fresh document given to both paths in alternating order."""
    warm_up, pages = document(min(options.pages, WARM_UP_PAGES), "Warm-up"), min(options.pages, WARM_UP_PAGES)
    directly(resident, page_messages(warm_up, max_side, limits), options.max_tokens)
    if stack is not None:
        through_system(stack, warm_up, pages, options.max_tokens)
    measured = Measured()
    for r in range(options.rounds):
        data = document(options.pages, f"Round {r + 1}")
        # Untimed: the direct path starts from the messages, the system from the uploaded file.
        messages = page_messages(data, max_side, limits)
        for path in ("system", "direct") if r % 2 == 0 else ("direct", "system"):
            if path == "direct":
                result, measured.prompt_tokens = directly(resident, messages, options.max_tokens)
                measured.direct.append(result)
            elif stack is not None:
                result, spent = through_system(stack, data, options.pages, options.max_tokens)
                measured.system.append(result)
                measured.timelines.append(spent)
    return measured


def direct_figure(measured: Measured, options: P5Options, common: dict) -> dict:
    direct = measured.direct
    return {"metric": "p5_vlm_pages_per_s_direct", "value": round(total_rate(direct), 3),
            "per_round": [round(r.rate, 3) for r in direct], "seconds": [round(r.seconds, 3) for r in direct],
            "output_tok_s": round(total_rate(direct) * options.max_tokens, 1),
            "prompt_tokens_per_page": measured.prompt_tokens,
            "note": "all pages at once to the engine from ready chat messages (page rendering and PNG encoding "
                    "untimed)", **common}


def total_rate(rounds: list[Round]) -> float:
    return sum(r.pages for r in rounds) / sum(r.seconds for r in rounds)
