"""Batch records in Redis and the atomic steps that move them: create (with a copy of the input's lines), cancel,
answer one line (once only), advance the submit cursor, end early, and finalize into output and error files."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass

import redis

from maoocr.batches.answers import Answer
from maoocr.batches.files import file_fields, part_file_id
from maoocr.config import BatchSettings
from maoocr.errors import BatchNotFound, FileNotFound, InvalidRequest, MaoOCRError
from maoocr.protocol.batches import (BATCH_ENDPOINTS, Batch, BatchCreateRequest, BatchList,
                                     BatchRequestCounts, FileObject)
from maoocr.store.due import DueSet
from maoocr.store.keys import (BATCH_CUSTOM_IDS_KEY, BATCH_ERRORS_KEY, BATCH_KEY, BATCH_LINES_KEY, BATCH_OUTPUT_KEY,
                               BATCHES_ACTIVE_KEY, BATCHES_DUE_KEY, BATCHES_OWNER_KEY, FILE_KEY, FILE_LINES_KEY)

_WINDOW = re.compile(r"^([1-9][0-9]*)([hms])$")
_UNIT_S = {"h": 3600, "m": 60, "s": 1}
_JSON_FIELDS = ("metadata", "errors")

# The batch with a copy of its input's lines (COPY: the file may be deleted while the batch runs), listed under its
# owner and due to a runner now. KEYS: batch, its lines, the file's lines, the owner's index, the active set.
# ARGV: ttl, creation score, batch id, owner index ttl, then field/value pairs. Answers the line count, -1 when the
# file's lines are gone.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('COPY', KEYS[3], KEYS[2]) == 0 then return -1 end
local total = redis.call('LLEN', KEYS[2])
redis.call('HSET', KEYS[1], 'total', total, 'completed', 0, 'failed', 0, 'answered', 0, 'cursor', 0, unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
redis.call('ZADD', KEYS[4], tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[5], 0, ARGV[3])
return total
"""

# A line's answer, once only: a line answered already (its job collected twice, a runner that died after this step
# and before removing the job from the due set, a sweep) changes nothing; either way the job is no longer due. The
# last answer makes the batch due to a runner now, to be finalized.
# KEYS: batch, output, errors, due set, active set. ARGV: line index, part, line, job id ('' for none), batch id.
_ANSWER = """
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[4], ARGV[4]) end
local total = redis.call('HGET', KEYS[1], 'total')
if not total then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
local target = KEYS[3]
local count = 'failed'
if ARGV[2] == 'output' then target = KEYS[2]; count = 'completed' end
redis.call('HSET', target, ARGV[1], ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', target, ttl) end
redis.call('HINCRBY', KEYS[1], count, 1)
if redis.call('HINCRBY', KEYS[1], 'answered', 1) >= tonumber(total) then
  redis.call('ZADD', KEYS[5], 0, ARGV[5])
end
return 1
"""

# A custom_id for a line: the index of the first line that holds it (a line queued again finds itself).
# KEYS: batch, its custom ids. ARGV: custom_id, index. -1 when the batch is gone.
_CLAIM_CUSTOM_ID = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return tonumber(redis.call('HGET', KEYS[2], ARGV[1]))
"""

# The submit cursor only moves forward (two runners on one batch after a lease ran out cannot move it back).
_ADVANCE = """
local cursor = redis.call('HGET', KEYS[1], 'cursor')
if cursor and tonumber(cursor) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'cursor', ARGV[1]) end
"""

# A status change from one of the allowed statuses (comma-separated ARGV[1]) to ARGV[2], with field/value pairs.
_MOVE = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == cur then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 3))
    return 1
  end
end
return 0
"""

# An early end (ARGV[1]: 'cancelled' or 'expired', at ARGV[2]) of a batch that runs: its unfinished lines are to be
# stopped, and a runner is due on it now. Cancelling shows as status `cancelling`. The first end asked wins.
# KEYS: batch, active set. ARGV: end, now, batch id. Answers the status after.
_END = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return '' end
if cur ~= 'validating' and cur ~= 'in_progress' then return cur end
redis.call('HSETNX', KEYS[1], 'end', ARGV[1])
if ARGV[1] == 'cancelled' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling', 'cancelling_at', ARGV[2])
  cur = 'cancelling'
end
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return cur
"""

# Every line answered: the final status, the output and error files (file objects over the answers, for the parts
# that have any), and the batch kept `ttl` from now; the copy of its input and its custom ids are no longer needed.
# KEYS: batch, active set, output file, error file, batch lines, custom ids, output, errors.
# ARGV: final status, now, ttl, batch id, then the output and the error file's fields but `bytes` (JSON).
_FINALIZE = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
if cur == 'completed' or cur == 'cancelled' or cur == 'expired' or cur == 'failed' then return 0 end
local counts = redis.call('HMGET', KEYS[1], 'total', 'answered')
if tonumber(counts[2]) < tonumber(counts[1]) then return 0 end
local ttl = tonumber(ARGV[3])
for i, name in ipairs({'output_file_id', 'error_file_id'}) do
  local lines = redis.call('HVALS', KEYS[6 + i])
  if #lines > 0 then
    local size = 0
    for _, line in ipairs(lines) do size = size + #line + 1 end  -- each line and its line break, in bytes
    local fields = cjson.decode(ARGV[4 + i])
    for key, value in pairs(fields) do redis.call('HSET', KEYS[2 + i], key, value) end
    redis.call('HSET', KEYS[2 + i], 'bytes', size)
    redis.call('EXPIRE', KEYS[2 + i], ttl)
    redis.call('HSET', KEYS[1], name, fields['id'])
  end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_at', ARGV[2])
redis.call('DEL', KEYS[5], KEYS[6])
for _, key in ipairs({KEYS[1], KEYS[7], KEYS[8]}) do redis.call('EXPIRE', key, ttl) end
redis.call('ZREM', KEYS[2], ARGV[4])
return 1
"""


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def line_job_id(batch_id: str, index: int) -> str:
    """The job of a batch's line: the same id every time the line is queued, so queueing it again is a no-op."""
    return f"{batch_id}-{index}"


def split_line_job_id(job_id: str) -> tuple[str, int] | None:
    batch_id, _, index = job_id.rpartition("-")
    return (batch_id, int(index)) if batch_id.startswith("batch_") and index.isdigit() else None


def window_seconds(window: str, settings: BatchSettings) -> int:
    """A completion_window ('24h', as OpenAI's; any whole hours; minutes or seconds down to min_window_s)."""
    match = _WINDOW.match(window)
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if not match or not settings.min_window_s <= seconds <= settings.max_window_s:
        shortest = f"{settings.min_window_s // 3600}h" if settings.min_window_s % 3600 == 0 else \
            f"{settings.min_window_s}s"
        raise InvalidRequest(f"completion_window {window!r} is not supported: give whole hours such as '24h', from "
                             f"{shortest} to {settings.max_window_s // 3600}h")
    return seconds


@dataclass
class BatchState:
    """What a runner reads of a batch to work on it."""

    id: str
    status: str
    endpoint: str
    owner: str | None
    total: int
    cursor: int
    answered: int
    end: str | None  # 'cancelled' or 'expired' once asked
    expires_at: int


class BatchStore:
    def __init__(self, client: redis.Redis, settings: BatchSettings) -> None:
        self.redis = client
        self.settings = settings
        self.active = DueSet(client, BATCHES_ACTIVE_KEY)
        self._create = client.register_script(_CREATE)
        self._answer = client.register_script(_ANSWER)
        self._claim_custom_id = client.register_script(_CLAIM_CUSTOM_ID)
        self._advance = client.register_script(_ADVANCE)
        self._move = client.register_script(_MOVE)
        self._end = client.register_script(_END)
        self._finalize = client.register_script(_FINALIZE)

    # The API's side.

    def create(self, request: BatchCreateRequest, input_file: FileObject, owner: str | None) -> Batch:
        if request.endpoint not in BATCH_ENDPOINTS:
            raise InvalidRequest(f"endpoint {request.endpoint!r} is not supported: batches run "
                                 f"{' or '.join(BATCH_ENDPOINTS)}")
        if input_file.purpose != "batch":
            raise InvalidRequest(f"file {input_file.id!r} has purpose {input_file.purpose!r}; a batch's input file "
                                 "is uploaded with purpose 'batch'")
        window_s = window_seconds(request.completion_window, self.settings)
        now = time.time()
        batch = Batch(id=new_batch_id(), endpoint=request.endpoint, input_file_id=input_file.id,
                      completion_window=request.completion_window, status="validating", created_at=int(now),
                      expires_at=int(now) + window_s, request_counts=BatchRequestCounts(),
                      metadata=request.metadata)
        fields = _encode(batch.model_dump(exclude_none=True, exclude={"request_counts", "object"}))
        if owner is not None:
            fields["owner"] = owner
        args: list = [window_s + self.settings.ttl_s, int(now * 1000), batch.id,
                      self.settings.max_window_s + self.settings.ttl_s]
        for key, value in fields.items():
            args += [key, value]
        total = self._create(keys=[BATCH_KEY.format(batch.id), BATCH_LINES_KEY.format(batch.id),
                                   FILE_LINES_KEY.format(input_file.id), BATCHES_OWNER_KEY.format(owner or ""),
                                   BATCHES_ACTIVE_KEY], args=args)
        if total == -1:
            raise FileNotFound(f"file {input_file.id!r} not found (it may have expired or been deleted)")
        return batch.model_copy(update={"request_counts": BatchRequestCounts(total=total)})

    def get(self, batch_id: str, owner: str | None) -> Batch:
        return _decode(self._raw(batch_id, owner))

    def list(self, owner: str | None, after: str | None, limit: int) -> BatchList:
        """The owner's batches, newest first, `limit` of them after the batch `after` (OpenAI's paging)."""
        index = BATCHES_OWNER_KEY.format(owner or "")
        start = 0
        if after:
            rank = self.redis.zrevrank(index, after)
            if rank is None:
                raise InvalidRequest(f"after: no batch {after!r} in the list (it may have expired)")
            start = rank + 1
        found: list[Batch] = []
        while len(found) <= limit:
            ids = self.redis.zrevrange(index, start, start + limit)
            if not ids:
                break
            with self.redis.pipeline(transaction=False) as pipe:
                for batch_id in ids:
                    pipe.hgetall(BATCH_KEY.format(batch_id))
                records = pipe.execute()
            for batch_id, raw in zip(ids, records, strict=True):
                if raw:
                    found.append(_decode(raw))
                    start += 1
                else:  # expired with its keys: the index forgets it too (the ones after it move up a rank)
                    self.redis.zrem(index, batch_id)
        data = found[:limit]
        return BatchList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                         has_more=len(found) > limit)

    def cancel(self, batch_id: str, owner: str | None) -> Batch:
        self._raw(batch_id, owner)
        status = self._end(keys=[BATCH_KEY.format(batch_id), BATCHES_ACTIVE_KEY],
                           args=["cancelled", int(time.time()), batch_id])
        if status not in ("cancelling", "cancelled", ""):
            raise MaoOCRError(f"batch {batch_id!r} is {status}: only a validating or in_progress batch can be "
                              "cancelled", code="invalid_request", http_status=409)
        return self.get(batch_id, owner)

    def _raw(self, batch_id: str, owner: str | None) -> dict[str, str]:
        raw = self.redis.hgetall(BATCH_KEY.format(batch_id))
        if not raw or (owner is not None and raw.get("owner") != owner):
            raise BatchNotFound(f"batch {batch_id!r} not found (it may have expired)")
        return raw

    # The runners' side.

    def state(self, batch_id: str) -> BatchState | None:
        raw = self.redis.hgetall(BATCH_KEY.format(batch_id))
        if not raw:
            return None
        return BatchState(id=batch_id, status=raw["status"], endpoint=raw["endpoint"], owner=raw.get("owner"),
                          total=int(raw["total"]), cursor=int(raw["cursor"]), answered=int(raw["answered"]),
                          end=raw.get("end"), expires_at=int(raw["expires_at"]))

    def lines(self, batch_id: str, start: int, stop: int) -> list[str]:
        """The input lines [start, stop) of a batch."""
        return self.redis.lrange(BATCH_LINES_KEY.format(batch_id), start, stop - 1)

    def line_context(self, batch_id: str, index: int) -> tuple[str, str | None, str] | None:
        """(endpoint, end, the line) to answer one line with; None when the batch or its input copy is gone."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(BATCH_KEY.format(batch_id), "endpoint", "end")
            pipe.lindex(BATCH_LINES_KEY.format(batch_id), index)
            (endpoint, end), line = pipe.execute()
        return None if endpoint is None or line is None else (endpoint, end, line)

    def answered(self, batch_id: str) -> set[int]:
        """The indexes of the lines answered so far."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hkeys(BATCH_OUTPUT_KEY.format(batch_id))
            pipe.hkeys(BATCH_ERRORS_KEY.format(batch_id))
            output, errors = pipe.execute()
        return {int(index) for index in output + errors}

    def answer(self, batch_id: str, index: int, answer: Answer, job_id: str = "") -> bool:
        """Record a line's answer unless it has one; its job (if any) is no longer due. True when recorded."""
        return self._answer(keys=[BATCH_KEY.format(batch_id), BATCH_OUTPUT_KEY.format(batch_id),
                                  BATCH_ERRORS_KEY.format(batch_id), BATCHES_DUE_KEY, BATCHES_ACTIVE_KEY],
                            args=[index, answer.part, answer.line, job_id, batch_id]) == 1

    def claim_custom_id(self, batch_id: str, custom_id: str, index: int) -> int:
        """The index of the first line with this custom_id (`index` itself unless another line holds it)."""
        return int(self._claim_custom_id(keys=[BATCH_KEY.format(batch_id), BATCH_CUSTOM_IDS_KEY.format(batch_id)],
                                         args=[custom_id, index]))

    def advance(self, batch_id: str, cursor: int) -> None:
        self._advance(keys=[BATCH_KEY.format(batch_id)], args=[cursor])

    def move(self, batch_id: str, allowed: tuple[str, ...], status: str, **fields: int) -> bool:
        args: list = [",".join(allowed), status]
        for key, value in fields.items():
            args += [key, value]
        return self._move(keys=[BATCH_KEY.format(batch_id)], args=args) == 1

    def expire(self, batch_id: str) -> None:
        """The completion window is over: the batch's unfinished lines are to be stopped."""
        self._end(keys=[BATCH_KEY.format(batch_id), BATCHES_ACTIVE_KEY], args=["expired", int(time.time()), batch_id])

    def finalize(self, state: BatchState) -> bool:
        """Every line is answered: end the batch (completed, cancelled or expired) with its output and error files."""
        final = {"cancelled": "cancelled", "expired": "expired"}.get(state.end or "", "completed")
        now, ttl = int(time.time()), self.settings.ttl_s
        files = []
        for part in ("output", "error"):
            record = FileObject(id=part_file_id(state.id, part), bytes=0, created_at=now,
                                filename=f"{state.id}_{part}.jsonl", purpose="batch_output", expires_at=now + ttl)
            fields = {**file_fields(record, state.owner), "batch_id": state.id, "part": part}
            del fields["bytes"]  # counted by the step itself
            files.append(json.dumps(fields))
        done = self._finalize(
            keys=[BATCH_KEY.format(state.id), BATCHES_ACTIVE_KEY, FILE_KEY.format(part_file_id(state.id, "output")),
                  FILE_KEY.format(part_file_id(state.id, "error")), BATCH_LINES_KEY.format(state.id),
                  BATCH_CUSTOM_IDS_KEY.format(state.id), BATCH_OUTPUT_KEY.format(state.id),
                  BATCH_ERRORS_KEY.format(state.id)],
            args=[final, now, ttl, state.id, *files])
        return done == 1


def _encode(fields: dict) -> dict[str, str]:
    return {key: json.dumps(value) if key in _JSON_FIELDS else str(value) for key, value in fields.items()}


def _decode(raw: dict[str, str]) -> Batch:
    data: dict = {key: value for key, value in raw.items() if key in Batch.model_fields}
    for key in _JSON_FIELDS:
        if key in data:
            data[key] = json.loads(data[key])
    data["request_counts"] = BatchRequestCounts(total=int(raw.get("total", 0)), completed=int(raw.get("completed", 0)),
                                                failed=int(raw.get("failed", 0)))
    return Batch.model_validate(data)
