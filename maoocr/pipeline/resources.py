"""The resource state strategy selection looks at: free GPU memory (pynvml), queue depths, live VLM workers."""

from __future__ import annotations

import redis

from maoocr.config import Settings
from maoocr.engines.memory import read_gpus
from maoocr.metrics import queue_depths
from maoocr.pipeline.strategy import ResourceState
from maoocr.store.heartbeats import live_workers


def read_resources(client: redis.Redis, settings: Settings) -> ResourceState:
    assert settings.models is not None
    vlm_models = [name for name, m in settings.models.models.items() if m.model_type == "multimodal"]
    queues = [settings.queues.ocr, *(settings.queues.llm_queue(m) for m in settings.models.models)]
    depths = queue_depths(client, queues)
    serving = {w.get("model") for w in live_workers(client)}
    # 'vlm' means the VLM OCR backend, so only the model configured for it counts, and only while it is served.
    vlm = settings.ocr.vlm_model
    note = None
    if vlm is None:
        note = "ocr.vlm_model is not set" + (f"; multimodal models configured: {', '.join(vlm_models)}"
                                             if vlm_models else "")
    elif vlm not in serving:
        note = f"no live worker serves the VLM {vlm!r}"
    return ResourceState(gpu_free_mb=[g.free_mb for g in read_gpus()], queue_depths=depths,
                         vlm_available=note is None, vlm_note=note)
