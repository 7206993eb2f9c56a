"""The task message built without Celery's producer (maoocr/tasks.py) is the one Celery itself writes, and a
job's record and its message are created together."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import redis

from devtools.processes import settings_for
from maoocr.priorities import queue_list
from maoocr.store.jobs import JobStore
from maoocr.store.keys import JOB_KEY, JOB_STATS_KEY
from maoocr.tasks import ARGSREPR_MAX, GENERATE_TASK, generation_message, task_message
from workers.celery_app import create_celery_app

# Differ by design between two messages: fresh per message, or Celery's reply address for its rpc:// backend.
PER_MESSAGE = {"delivery_tag", "reply_to"}


def celerys_message(redis_url: str, tmp_path, task: str, task_id: str, args: list, queue: str,
                    priority: int) -> dict:
    """What Celery's own producer writes, taken from the list our queue_list names for that priority."""
    app = create_celery_app(settings_for(redis_url, tmp_path))
    app.send_task(task, args=args, task_id=task_id, queue=queue, ignore_result=True, priority=priority)
    client = redis.Redis.from_url(redis_url)
    raw = client.rpop(queue_list(queue, priority))
    assert raw is not None, [key for key in client.keys(queue + "*")]
    return json.loads(raw)


@pytest.mark.parametrize("priority", [0, 3, 7, 9])
def test_same_message_as_celerys_send_task(redis_url, tmp_path, priority):
    queue, task_id = f"maoocr.test.{uuid.uuid4().hex}", uuid.uuid4().hex
    args = [{"job_id": task_id, "params": {"prompt": "héllo \"quoted\" ✓", "max_tokens": 3, "stop": None}}]
    theirs = celerys_message(redis_url, tmp_path, GENERATE_TASK, task_id, args, queue, priority)
    ours = json.loads(task_message(GENERATE_TASK, task_id, args, queue, priority))

    assert ours.keys() == theirs.keys()
    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])  # byte for byte
    assert {k: v for k, v in ours.items() if k not in ("body", "headers", "properties")} == \
           {k: v for k, v in theirs.items() if k not in ("body", "headers", "properties")}
    # Every header the same, but the argument text (JSON here, Python's repr there: for people, not machines).
    assert ours["headers"].keys() == theirs["headers"].keys()
    assert {k: v for k, v in ours["headers"].items() if k != "argsrepr"} == \
           {k: v for k, v in theirs["headers"].items() if k != "argsrepr"}
    assert json.loads(ours["headers"]["argsrepr"]) == args
    assert ours["properties"].keys() == theirs["properties"].keys()
    assert {k: v for k, v in ours["properties"].items() if k not in PER_MESSAGE} == \
           {k: v for k, v in theirs["properties"].items() if k not in PER_MESSAGE}
    assert ours["properties"]["delivery_tag"] != json.loads(task_message(GENERATE_TASK, task_id, args, queue)
                                                            )["properties"]["delivery_tag"]


def test_argument_text_is_capped():
    message = json.loads(task_message(GENERATE_TASK, "j", [{"prompt": "x" * 10_000}], "q"))
    assert len(message["headers"]["argsrepr"]) == ARGSREPR_MAX
    assert json.loads(base64.b64decode(message["body"]))[0] == [{"prompt": "x" * 10_000}]


def test_record_and_message_are_created_together_and_once(redis_client):
    jobs, queue = JobStore(redis_client, 60), f"maoocr.test.{uuid.uuid4().hex}"
    payload = {"job_id": uuid.uuid4().hex}
    message = generation_message(payload, queue, 0)
    queued_before = int(redis_client.hget(JOB_STATS_KEY, "generation:queued") or 0)
    record = jobs.create("generation", model="m", job_id=payload["job_id"], enqueue=(queue, message))
    assert redis_client.hget(JOB_KEY.format(record.id), "status") == "queued"
    assert redis_client.ttl(JOB_KEY.format(record.id)) > 0
    assert redis_client.lrange(queue, 0, -1) == [message]
    assert json.loads(json.loads(message)["headers"]["argsrepr"]) == [payload]
    # The same step again (redis-py resends it after a lost reply), once a worker has claimed the job: nothing
    # changes, no second message, the claimed record is not reset to queued.
    assert jobs.claim(record.id, "w 1").attempt == 1
    jobs.create("generation", model="m", job_id=payload["job_id"], enqueue=(queue, message))
    assert redis_client.lrange(queue, 0, -1) == [message]
    assert redis_client.hget(JOB_KEY.format(record.id), "status") == "running"
    assert int(redis_client.hget(JOB_STATS_KEY, "generation:queued") or 0) == queued_before  # counted once, moved on
