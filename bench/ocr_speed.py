"""OCR speed and memory with layout, reading order and tables: the same development pages read by PP-OCR with
the structure steps and without them (line order only, no gutter cuts: the pipeline before layout analysis),
alternating rounds; PDF pages read from their text layer, pages/s on one core; an OCR process's memory with
every model loaded. One JSON line per figure."""

from __future__ import annotations

import io
import os
import resource
import statistics
import time
from dataclasses import dataclass

from PIL import Image

from bench.devset import PAGE_TYPES, build


@dataclass
class OCRSpeedOptions:
    page_types: tuple[str, ...] = PAGE_TYPES
    variant: str = "scan200"  # the scan OCR'd in both arms
    rounds: int = 2
    text_layer_repeats: int = 5


def run(options: OCRSpeedOptions) -> list[dict]:
    # One ONNX thread per engine, as an OCR worker of one process per core runs them.
    from maoocr.ocr.rapid_engine import RapidOCREngine

    out: list[dict] = [{"metric": "ocr_speed_rss_mb", "stage": "before models", "value": _rss_mb()}]
    plain = RapidOCREngine("accurate", layout=False, gutters=False, threads=1)
    structured = RapidOCREngine("accurate", threads=1)
    out.append({"metric": "ocr_speed_rss_mb", "stage": "PP-OCR, layout and table models loaded", "value": _rss_mb()})
    pages = {kind: Image.open(io.BytesIO(build(kind, 1).document(options.variant))) for kind in options.page_types}
    for image in pages.values():  # warm both arms
        plain.recognize(image)
        structured.recognize(image)
    times: dict[str, dict[str, list[float]]] = {k: {"plain": [], "structured": []} for k in pages}
    for _ in range(options.rounds):
        for kind, image in pages.items():
            for arm, engine in (("plain", plain), ("structured", structured)):
                started = time.process_time()
                engine.recognize(image)
                times[kind][arm].append(time.process_time() - started)
    for kind, arms in times.items():
        plain_s, structured_s = statistics.median(arms["plain"]), statistics.median(arms["structured"])
        out.append({"metric": "ocr_speed_page_cpu_s", "page_type": kind, "variant": options.variant,
                    "line_order_only": round(plain_s, 3), "with_layout_and_tables": round(structured_s, 3),
                    "ratio": round(structured_s / plain_s, 3)})
    total_plain = sum(statistics.median(a["plain"]) for a in times.values())
    total_structured = sum(statistics.median(a["structured"]) for a in times.values())
    out.append({"metric": "ocr_speed_structure_ratio", "value": round(total_structured / total_plain, 3),
                "pages": len(pages), "variant": options.variant})
    out.append({"metric": "ocr_speed_rss_mb", "stage": "after reading the pages", "value": _rss_mb()})
    out += _text_layer(options)
    return out


def _text_layer(options: OCRSpeedOptions) -> list[dict]:
    """Born-digital pages through the whole page step (text layer, layout model, reading order, tables)."""
    from maoocr.config import load_settings
    from maoocr.documents import load_document
    from maoocr.pipeline.page import process_document_page
    from maoocr.pipeline.steps import build_steps
    from maoocr.pipeline.strategy import ResourceState
    from maoocr.protocol.ocr import OCROptions

    steps = build_steps(load_settings(env={}), None, engine_threads=1)
    docs = [load_document(build(kind, seed).pdf) for kind in options.page_types for seed in (1, 2)]
    request, resources = OCROptions(), ResourceState()
    for doc in docs:
        process_document_page(doc, 0, request, resources, steps)
    per_step: dict[str, list[float]] = {}
    started = time.process_time()
    for _ in range(options.text_layer_repeats):
        for doc in docs:
            page = process_document_page(doc, 0, request, resources, steps)
            for step, ms in page.timings_ms.items():
                per_step.setdefault(step, []).append(ms)
    seconds = time.process_time() - started
    count = options.text_layer_repeats * len(docs)
    return [{"metric": "ocr_speed_text_layer_pages_s_per_core", "value": round(count / seconds, 2), "pages": count,
             "ms_per_step_median": {k: round(statistics.median(v), 1) for k, v in per_step.items()}}]


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
