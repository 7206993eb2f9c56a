"""Job records in Redis: create, read, and atomic state transitions (queued → running → a terminal state)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any, Iterable, NamedTuple

import redis

from maoocr.errors import JobNotFound, MaoOCRError
from maoocr.protocol.generation import StreamChunk
from maoocr.protocol.jobs import TERMINAL, JobError, JobKind, JobRecord, JobStatus
from maoocr.store.combined_calls import CombinedCalls
from maoocr.store.job_events import JobDoneListener
from maoocr.store.keys import (BATCHES_DUE_KEY, CANCEL_CHANNEL, JOB_KEY, JOB_STATS_KEY, WEBHOOKS_DUE_KEY, WORKER_KEY,
                               lua_key)
from maoocr.store.streams import StreamStore
from maoocr.store.usage import LUA as _USAGE

TAKEN_OVER = "taken_over"  # a fenced transition's "status before": the job is another worker's now
_ID_STARTS = str(len(JOB_KEY.format("")) + 1)  # where the id begins in a job's key (Lua strings count from 1)

# Keeps JOB_STATS_KEY in the same step as every status change; prepended to the scripts below (KEYS[1]: the job).
_COUNT = f"""
local function count(from, to)
  local kind = redis.call('HGET', KEYS[1], 'kind') or 'unknown'
  redis.call('HINCRBY', '{JOB_STATS_KEY}', kind .. ':' .. from, -1)
  redis.call('HINCRBY', '{JOB_STATS_KEY}', kind .. ':' .. to, 1)
end
"""

# A new record, its counter and (when given) the message that runs it, in one step; and once only: a client that
# sends it again after a lost reply (redis-py retries on connection errors) finds the record and changes nothing,
# so neither a second message nor a reset of a record a worker already claimed can follow.
# KEYS: the job, the queue's list. ARGV: ttl, stats field, message ('' for none), then field/value pairs.
_CREATE = _USAGE + f"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('HINCRBY', '{JOB_STATS_KEY}', ARGV[2], 1)
usage_job_created(string.sub(KEYS[1], {_ID_STARTS}))
if ARGV[3] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[3]) end
return 1
"""

# Check-and-set in one step so two writers (a worker and a cancelling API call, or a redelivered task)
# can never both move a job out of the same state. With a fence (a worker's identity, ARGV[4]; '' for none) the
# job must also still be that worker's: one whose job was taken over gets TAKEN_OVER and writes nothing.
# Safe to run twice: redis-py sends a command (a pipeline: all of its commands) again when a reply is lost, and
# Redis may have run it. The record keeps the last move's call id and the status before it, and a second run of
# that call answers what the first did (a claim below does the same).
# ARGV: allowed statuses (comma-separated), ttl, publish ('1' for terminal states), fence, call id, 'status', the
# new status, then other field/value pairs.
_TRANSITION = _COUNT + _USAGE + """
local found = redis.call('HMGET', KEYS[1], 'status', 'worker', 'move_call', 'move_before')
local cur = found[1]
if not cur then return {0, ''} end
if found[3] == ARGV[5] then return {1, found[4]} end
if ARGV[4] ~= '' and found[2] ~= ARGV[4] then return {0, '""" + TAKEN_OVER + """'} end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then ok = true end end
if not ok then return {0, cur} end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'move_call', ARGV[5], 'move_before', cur)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
if ARGV[7] ~= cur then count(cur, ARGV[7]) end
if ARGV[3] == '1' then
  redis.call('PUBLISH', KEYS[1] .. ':done', ARGV[7])  -- DONE_CHANNEL
  local job_id = string.sub(KEYS[1], """ + _ID_STARTS + """)
  -- Usage is counted in the step that ends the job, so once: a resend is answered above, a job run again ends once.
  if cur == 'queued' or cur == 'running' then
    usage_job_ended(job_id, cur, ARGV[7])
  end
  -- A job with a webhook is due for it in the same step that ends it: no end can be missed, none queued twice.
  if redis.call('HEXISTS', KEYS[1], 'webhook_url') == 1 then
    redis.call('ZADD', '""" + WEBHOOKS_DUE_KEY + """', 'NX', 0, job_id)
  end
  -- A batch line's answer is due to its batch in the same way.
  if redis.call('HEXISTS', KEYS[1], 'batch_id') == 1 then
    redis.call('ZADD', '""" + BATCHES_DUE_KEY + """', 'NX', 0, job_id)
  end
end
return {1, cur}
"""

# queued → running for a worker, or a running job whose worker is gone (its heartbeat expired, or it is a new
# incarnation under the same name): the attempt number, or 0 and why not ('busy': its worker is alive); then the
# record's created_at and the worker it had (one round trip: the claim is on every job's path). Run twice with the
# same call id (a resend), it answers the first run's answer instead of 'busy' for the claim it made itself.
# ARGV: "<worker name> <instance token>", ttl, started_at, call id.
_CLAIM = _COUNT + """
local found = redis.call('HMGET', KEYS[1], 'status', 'worker', 'created_at', 'claim_call', 'claim_answer')
local cur, owner, created = found[1], found[2] or '', found[3] or ''
if not cur then return {0, 'missing', '', ''} end
if found[4] == ARGV[4] then return cjson.decode(found[5]) end
if cur == 'running' then
  local name, token = string.match(owner, '^(%S+) (%S+)$')
  if name then
    local beat = redis.call('GET', """ + lua_key(WORKER_KEY, "name") + """)
    if beat and string.find(beat, token, 1, true) then return {0, 'busy', created, owner} end
  end
elseif cur ~= 'queued' then
  return {0, cur, created, owner}
end
if cur == 'queued' then count('queued', 'running') end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local answer = {attempt, cur, created, owner}
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[3],
           'claim_call', ARGV[4], 'claim_answer', cjson.encode(answer))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return answer
"""

# running → queued, only by the worker that runs it (a stopping worker hands its job back).
_RELEASE = _COUNT + """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
count('running', 'queued')
redis.call('HSET', KEYS[1], 'status', 'queued')
return 1
"""

_JSON_FIELDS = ("progress", "result", "error")
_listener_lock = threading.Lock()


class Claim(NamedTuple):
    attempt: int  # 0: not to be run here (see `before`)
    before: str  # the status it had, or why not: 'busy' (its worker is alive), 'missing'
    created_at: float  # when it was submitted (0.0 when missing)
    previous_worker: str  # the worker it had before, if any


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_call_id() -> str:
    """Names one claim or move, so a resend of it (a lost reply) is answered, not run again."""
    return os.urandom(8).hex()


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    """Flatten a record's fields into Redis hash strings (JSON for structured ones)."""
    out = {}
    for key, value in fields.items():
        if value is None:
            continue
        out[key] = json.dumps(value) if key in _JSON_FIELDS else str(value)
    return out


def decode_record(raw: dict[str, str]) -> JobRecord:
    data: dict[str, Any] = dict(raw)
    for key in _JSON_FIELDS:
        if key in data:
            data[key] = json.loads(data[key])
    return JobRecord.model_validate(data)


class JobStore:
    """Reads and writes job records with a TTL. Synchronous; the worker's asyncio side has its own twin calls."""

    def __init__(self, client: redis.Redis, ttl_s: int, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        """`wait_replicas`: a create returns once that many Redis replicas hold the record and its message (WAIT,
        up to `wait_timeout_ms`), so a failover right after cannot lose a job its caller was told about."""
        self.redis = client
        self.ttl_s = ttl_s
        self._create = client.register_script(_CREATE)
        self._transition = client.register_script(_TRANSITION)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        # A burst brings many creates (API threads), claims and outcomes (worker threads) at once: one round trip
        # carries all that arrive while the one before is in flight.
        self._combined = CombinedCalls(client, wait_replicas, wait_timeout_ms)
        self._listener: JobDoneListener | None = None

    def create(self, kind: JobKind, *, model: str | None = None, owner: str | None = None,
               job_id: str | None = None, progress: dict | None = None,
               enqueue: tuple[str, str] | None = None, webhook_url: str | None = None,
               priority: int | None = None, batch_id: str | None = None) -> JobRecord:
        """A new queued record. `enqueue` = (list, message): the broker message that runs the job, pushed on
        that Redis list in the same atomic step, so the record and its message exist together or not at all.
        `batch_id`: a Batch API line's job, whose end is due to that batch (`maoocr.batches`)."""
        record = JobRecord(id=job_id or new_job_id(), kind=kind, status="queued", model=model, owner=owner,
                           created_at=time.time(), progress=progress, webhook_url=webhook_url, priority=priority,
                           webhook_status="pending" if webhook_url else None, batch_id=batch_id)
        queue, message = enqueue if enqueue is not None else ("", "")
        args: list[str | int] = [self.ttl_s, f"{kind}:queued", message]
        for field_name, value in encode_fields(record.model_dump(exclude_none=True)).items():
            args += [field_name, value]
        self._combined.call(self._create, [JOB_KEY.format(record.id), queue], args, replicated=True)
        return record

    def get(self, job_id: str, owner: str | None = None) -> JobRecord:
        raw = self._combined.command("HGETALL", JOB_KEY.format(job_id))
        _check_found(job_id, bool(raw), raw.get("owner"), owner)
        return decode_record(raw)

    def _status(self, job_id: str, owner: str | None = None) -> str:
        status, record_owner = self._combined.command("HMGET", JOB_KEY.format(job_id), "status", "owner")
        _check_found(job_id, status is not None, record_owner, owner)
        return status

    def transition(self, job_id: str, allowed_from: Iterable[JobStatus], to: JobStatus, fence: str | None = None,
                   **fields: Any) -> tuple[bool, str]:
        """Move a job to `to` if it is in one of `allowed_from` (and, with a `fence`, still run by that worker).
        Returns (moved, status before), or (False, TAKEN_OVER) when the fence kept the move out."""
        fields["status"] = to
        if to in TERMINAL:
            fields.setdefault("finished_at", time.time())
        encoded = encode_fields(fields)
        args = [",".join(allowed_from), self.ttl_s, "1" if to in TERMINAL else "0", fence or "", new_call_id(),
                "status", encoded.pop("status")]
        for key, value in encoded.items():
            args += [key, value]
        moved, before = self._combined.call(self._transition, [JOB_KEY.format(job_id)], args)
        return bool(moved), before

    def claim(self, job_id: str, worker: str) -> Claim:
        """Take a job to run: its attempt number and the status before, or attempt 0 and why not. A redelivered
        job whose worker is alive is 'busy' (the caller waits); one whose worker died is taken over with the
        next attempt."""
        attempt, before, created, previous = self._combined.call(self._claim, [JOB_KEY.format(job_id)],
                                                                 [worker, self.ttl_s, time.time(), new_call_id()])
        return Claim(int(attempt), before, float(created or 0.0), previous)

    def release(self, job_id: str, worker: str) -> bool:
        """Hand a running job back (running → queued) so another worker can claim it; only its worker may."""
        return bool(self._release(keys=[JOB_KEY.format(job_id)], args=[worker]))

    def note_webhook(self, job_id: str, status: str, attempts: int, error: str | None) -> None:
        """How the job's webhook delivery stands (webhook_status, webhook_attempts, webhook_error)."""
        key = JOB_KEY.format(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"webhook_status": status, "webhook_attempts": attempts,
                                    **({"webhook_error": error} if error else {})})
            if error is None:
                pipe.hdel(key, "webhook_error")
            pipe.execute()

    def wait(self, job_id: str, timeout_s: float, owner: str | None = None) -> JobRecord:
        """Block until the job is in a terminal state, woken by the process's shared done-listener."""
        listener = self._done_listener()
        event = listener.register(job_id)
        try:
            deadline = time.monotonic() + timeout_s
            # Read after registering, so a transition between the two cannot be missed. The status alone while
            # the job runs; once the done event came, the whole record at once (it has ended: one read, not two).
            status = self._status(job_id, owner)
            while status not in TERMINAL:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout_s} s")
                # Re-read now and then anyway: a done event sent while Redis was away is lost.
                if event.wait(min(remaining, 5.0)):
                    event.clear()
                    record = self.get(job_id, owner)
                    if record.status in TERMINAL:
                        return record
                    status = record.status
                else:
                    status = self._status(job_id, owner)
            return self.get(job_id, owner)
        finally:
            listener.unregister(job_id, event)

    def _done_listener(self) -> JobDoneListener:
        with _listener_lock:
            if self._listener is None:
                self._listener = JobDoneListener(self.redis)
            return self._listener

    def cancel(self, job_id: str, streams: StreamStore, owner: str | None = None) -> JobRecord:
        """Cancel a queued or running job. A finished job stays as it is.

        A running job's worker hears it on CANCEL_CHANNEL, aborts the engine request and ends the stream;
        a queued job has no worker yet, so its stream is ended here.
        """
        record = self.get(job_id, owner)
        if not record.terminal:
            moved, before = self.transition(job_id, ("queued", "running"), "cancelled",
                                            error={"code": "cancelled", "message": "cancelled by request"})
            if moved:
                self.redis.publish(CANCEL_CHANNEL, job_id)
                if before == "queued":
                    streams.append([StreamChunk(job_id=job_id, finished=True, finish_reason="cancelled",
                                                event="end")])
        return self.get(job_id)


def _check_found(job_id: str, exists: bool, record_owner: str | None, owner: str | None) -> None:
    # Someone else's job (or one made while auth was off) looks exactly like no job: no existence leak.
    if not exists or (owner is not None and record_owner != owner):
        raise JobNotFound(f"job {job_id!r} not found (it may have expired)")


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The `error` field of a failed job, from any exception."""
    if isinstance(exc, MaoOCRError):
        return {"error": JobError(code=exc.code, message=exc.message).model_dump()}
    return {"error": {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}}
