"""Task names and the Celery task message, as kombu's Redis transport stores it on a queue's list: plain data, so
the API enqueues by task name without a Celery app, and workers register their tasks under the same names.

Celery's own producer (`send_task`) spends most of the API's CPU on a generation request: a fresh Redis client per
publish, the message passed through kombu's layers. Built here the message is a few string operations, and as plain
data it is pushed in the same atomic step that creates the job record (`JobStore.create(enqueue=...)`), so a job is
never recorded without its message, nor queued without its record.

The format is Celery's task protocol 2 in kombu's JSON envelope (body base64-encoded). `tests/test_task_message.py`
compares it field by field with what `send_task` writes, so a Celery or kombu upgrade that changes it fails there.
It holds for a Redis broker with kombu's default priority steps and no key prefix, which is how `workers.celery_app`
configures it: a message of priority p is pushed on `maoocr.priorities.queue_list(queue, p)`.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Callable

GENERATE_TASK = "maoocr.generate"
OCR_SPLIT_TASK = "maoocr.ocr.split"
OCR_PAGE_TASK = "maoocr.ocr.page"
OCR_PAGE_MODELS_TASK = "maoocr.ocr.page_models"
OCR_ASSEMBLE_TASK = "maoocr.ocr.assemble"

# (task payload, queue, priority) → the broker message that runs a job, pushed on the queue's list for that priority
# beside the job's record.
TaskMessage = Callable[[dict, str, int], str]

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
ARGSREPR_MAX = 1024  # Celery's own cap on the argument text shown in logs and Flower
_HOST = socket.gethostname()
_REPLY_TO = str(uuid.uuid4())  # Celery puts its app's reply address here; only the rpc:// backend reads it


def task_message(task: str, task_id: str, args: list, queue: str, priority: int = 0) -> str:
    """The message that runs `task(*args)` as `task_id` on `queue` (result ignored, no retries, no ETA). Its
    priority is kept in the message so that kombu puts it back on the same list when it restores it."""
    args_json = json.dumps(args)
    body = "[" + args_json + ", {}, " + json.dumps(_EMBED) + "]"
    headers = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None, "group": None,
        "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        # JSON rather than Python's repr (cheap: already made for the body); Celery's cap.
        "argsrepr": args_json[:ARGSREPR_MAX], "kwargsrepr": "{}",
        "origin": f"gen{os.getpid()}@{_HOST}",  # Celery's name for a process that is not a worker
        "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    properties = {
        "correlation_id": task_id, "reply_to": _REPLY_TO, "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue}, "priority": priority, "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),  # kombu's per-message tag, the key of its unacked record
    }
    return json.dumps({"body": base64.b64encode(body.encode()).decode("ascii"), "content-encoding": "utf-8",
                       "content-type": "application/json", "headers": headers, "properties": properties})


def generation_message(payload: dict, queue: str, priority: int) -> str:
    """A generation job's message (a `TaskMessage`)."""
    return task_message(GENERATE_TASK, payload["job_id"], [payload], queue, priority)


def ocr_split_message(payload: dict, queue: str, priority: int) -> str:
    """An OCR job's first task: split the document into pages (its page tasks inherit its priority)."""
    return task_message(OCR_SPLIT_TASK, payload["job_id"], [payload], queue, priority)
