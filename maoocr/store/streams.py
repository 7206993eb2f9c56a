"""Job streams: every chunk is appended to a replayable Redis list and published on the job's stream channel.

Redis assigns `seq` inside one script (list length before the push), so the record and the live channel always
agree, any writer may append, and a subscriber that arrives late replays the list and then follows the channel
without losing or repeating a chunk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from json.encoder import encode_basestring  # JSON string literal, non-ASCII kept (C speed)
from typing import Callable, Iterator, Union

import redis

from maoocr.protocol.generation import StreamChunk
from maoocr.store.client import subscribe_confirmed
from maoocr.store.keys import BATCHES_KEY, JOB_KEY, REPLAY_KEY, STREAM_CHANNEL, lua_key

log = logging.getLogger(__name__)

_SEQ_PLACEHOLDER = '"seq":-1'
OUTAGE_WAIT_S = 600.0  # how long a follower waits for Redis to come back mid-stream (Redis commands wait as long)

# ARGV: ttl, batch id, fence, then (job_id, chunk JSON with "seq":-1) pairs. Returns the seq given to each chunk,
# -1 for a chunk of a job this batch id was already appended to, or -2 for one the fence kept out.
# - Idempotent: redis-py (and the stream writer) send a write again after a lost reply, and Redis may have run it
#   (e.g. a reply lost as Redis shut down): the second run must not append the chunks twice. Each job's stream keeps
#   the ids of the batches appended to it, with the stream's TTL.
# - Fenced: with a fence (a worker's identity; '' for none) a job's chunks go in only while its record (JobStore's
#   maoocr:job:<id>) names that worker, so a worker whose job was taken over (it was cut off from Redis, or frozen,
#   longer than its heartbeat lived) cannot write into the stream of the attempt that replaced it.
_APPEND = """
local ttl = tonumber(ARGV[1])
local batch = ARGV[2]
local fence = ARGV[3]
local state = {}
local out = {}
for i = 4, #ARGV, 2 do
  local job = ARGV[i]
  if state[job] == nil then
    if fence ~= '' and redis.call('HGET', """ + lua_key(JOB_KEY, "job") + """, 'worker') ~= fence then
      state[job] = -2
    else
      local batches = """ + lua_key(BATCHES_KEY, "job") + """
      state[job] = redis.call('SADD', batches, batch) == 1 and 0 or -1
      redis.call('EXPIRE', batches, ttl)
    end
  end
  if state[job] == 0 then
    local key = """ + lua_key(REPLAY_KEY, "job") + """
    local seq = redis.call('LLEN', key)
    local payload = string.gsub(ARGV[i + 1], '"seq":%-1', '"seq":' .. seq, 1)
    redis.call('RPUSH', key, payload)
    redis.call('EXPIRE', key, ttl)
    redis.call('PUBLISH', """ + lua_key(STREAM_CHANNEL, "job") + """, payload)
    out[#out + 1] = seq
  else
    out[#out + 1] = state[job]
  end
end
return out
"""
FENCED = -2  # StreamStore.append's seq for a chunk the fence kept out


def new_batch_id() -> str:
    return os.urandom(8).hex()


@dataclass(slots=True)
class TokenDelta:
    """A token chunk on its way to Redis. The engine loop makes one per job per engine step, so it is a plain
    slotted object rather than a validated StreamChunk; it goes on the wire as exactly a StreamChunk's JSON."""

    job_id: str
    delta: str
    index: int = 0
    finish_reason: str | None = None
    emitted_at: float | None = None


Outgoing = Union[TokenDelta, StreamChunk]


def _token_template() -> str:
    """A StreamChunk's own JSON for a token chunk with %-slots for its five variable fields (every other field
    at its default, "seq": -1 for the script): the wire format stays the model's, filled in by string formatting
    rather than a model dump per token."""
    marks = {"job_id": "@@job@@", "delta": "@@delta@@", "finish_reason": "@@finish@@"}
    sample = StreamChunk(index=987654321, emitted_at=12345.0625, **marks).model_dump_json()
    template = sample.replace("%", "%%")
    for mark in marks.values():
        template = template.replace(f'"{mark}"', "%s", 1)
    template = template.replace('"index":987654321', '"index":%d', 1).replace('"emitted_at":12345.0625',
                                                                             '"emitted_at":%s', 1)
    assert template.count("%s") == 4 and "%d" in template, sample
    return template


_TOKEN_TEMPLATE = _token_template()
# Slots in the order the model lists its fields (job_id, delta, finish_reason, index, emitted_at).
_ORDER = sorted(("job_id", "delta", "finish_reason", "index", "emitted_at"), key=list(StreamChunk.model_fields).index)


def token_json(token: TokenDelta) -> str:
    values = {"job_id": encode_basestring(token.job_id), "delta": encode_basestring(token.delta),
              "finish_reason": "null" if token.finish_reason is None else encode_basestring(token.finish_reason),
              "index": token.index, "emitted_at": "null" if token.emitted_at is None else repr(token.emitted_at)}
    return _TOKEN_TEMPLATE % tuple(values[name] for name in _ORDER)


def _encode(chunk: Outgoing) -> str:
    if type(chunk) is TokenDelta:
        return token_json(chunk)
    if chunk.seq != -1:
        chunk = chunk.model_copy(update={"seq": -1})
    payload = chunk.model_dump_json()
    assert payload.startswith('{"job_id":') and _SEQ_PLACEHOLDER in payload
    return payload


class StreamStore:
    """Append to, replay and follow job streams (synchronous; safe to share between threads)."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._append = client.register_script(_APPEND)

    def append(self, chunks: list[Outgoing], batch_id: str | None = None, fence: str | None = None) -> list[int]:
        """Append chunks (of one or many jobs) in one round trip; returns their seqs (-1: already appended;
        FENCED: kept out by the fence).

        `batch_id` names this write: calling again with the same one (a retry after an error) appends nothing
        that the first call appended. A fresh one is made when none is given. `fence` (a worker's identity)
        appends a job's chunks only while the job's record names that worker."""
        if not chunks:
            return []
        args: list[str | int] = [self.ttl_s, batch_id or new_batch_id(), fence or ""]
        for chunk in chunks:
            args += [chunk.job_id, _encode(chunk)]
        return [int(seq) for seq in self._append(args=args)]

    def replay(self, job_id: str, after: int = -1) -> list[StreamChunk]:
        raw = self.redis.lrange(REPLAY_KEY.format(job_id), after + 1, -1)
        return [StreamChunk.model_validate_json(item) for item in raw]

    def follow(self, job_id: str, after: int = -1, timeout_s: float | None = None,
               is_over: Callable[[], bool] | None = None, poll_s: float = 1.0) -> Iterator[StreamChunk]:
        """Every chunk after `after`, in order, once, until the finished chunk.

        `is_over` is asked when the channel is quiet; it lets a caller stop following a job that ended
        without an end chunk (expired, or its worker vanished). Raises TimeoutError after `timeout_s`.
        A Redis outage after the stream started pauses it: it re-subscribes when Redis is back and catches up
        from the record (for up to OUTAGE_WAIT_S; a follower that cannot subscribe at all gets the error).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pubsub = self._subscribed(job_id)
        try:
            if self._ended_at_or_before(job_id, after):
                return  # resuming after the end chunk: nothing more will ever come
            last = after
            while True:
                try:
                    for chunk in self._follow_subscribed(pubsub, job_id, last, timeout_s, deadline, is_over, poll_s):
                        last = chunk.seq
                        yield chunk
                    return
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    pubsub.close()
                    pubsub = self._subscribed_again(job_id, deadline, exc)
        finally:
            pubsub.close()

    def _subscribed(self, job_id: str) -> redis.client.PubSub:
        pubsub = self.redis.pubsub()
        try:
            # The replay read must come after the confirmation, or a chunk could slip between the two.
            subscribe_confirmed(pubsub, STREAM_CHANNEL.format(job_id))
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    def _subscribed_again(self, job_id: str, deadline: float | None, cause: Exception) -> redis.client.PubSub:
        """Wait for Redis to come back (with back-off), then subscribe again; re-raise `cause` if it does not."""
        give_up = time.monotonic() + OUTAGE_WAIT_S
        if deadline is not None:
            give_up = min(give_up, deadline)
        delay = 0.1
        while True:
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                return self._subscribed(job_id)
            except (redis.ConnectionError, redis.TimeoutError, TimeoutError):
                if time.monotonic() > give_up:
                    raise cause from None

    def _follow_subscribed(self, pubsub: redis.client.PubSub, job_id: str, last: int, timeout_s: float | None,
                           deadline: float | None, is_over: Callable[[], bool] | None,
                           poll_s: float) -> Iterator[StreamChunk]:
        while True:
            # Catch up from the record: the first time, and whenever the channel skipped a seq.
            for chunk in self.replay(job_id, last):
                last = chunk.seq
                yield chunk
                if chunk.finished:
                    return
            while True:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=poll_s)
                if message is None:
                    if is_over is not None and is_over():
                        yield from self.replay(job_id, last)  # whatever landed just before the end
                        return
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"no end of stream for job {job_id} within {timeout_s} s")
                    break  # quiet: re-check the record in case a message was lost
                chunk = StreamChunk.model_validate_json(message["data"])
                if chunk.seq <= last:
                    continue
                if chunk.seq > last + 1:
                    break  # a gap: let the record fill it
                last = chunk.seq
                yield chunk
                if chunk.finished:
                    return

    def ended(self, job_id: str) -> bool:
        """The job's end chunk is on its record."""
        return self._ended_at_or_before(job_id, 1 << 62)

    def _ended_at_or_before(self, job_id: str, seq: int) -> bool:
        tail = self.redis.lindex(REPLAY_KEY.format(job_id), -1)
        if tail is None:
            return False
        chunk = StreamChunk.model_validate_json(tail)
        return chunk.finished and chunk.seq <= seq


def coalesce(batch: list[Outgoing]) -> list[Outgoing]:
    """Joins each job's consecutive token deltas (same choice) in a batch into one chunk, in order.

    Only a writer that is behind has several steps of one job in a batch, so under light load every engine step
    stays its own chunk, and under saturation Redis and the Python side do one append per job per batch instead
    of one per token. A merged chunk keeps the earliest `emitted_at` (its oldest token's hop is what it shows).
    """
    out: list[Outgoing] = []
    latest: dict[str, int] = {}  # job → position in `out` of its latest chunk
    parts: dict[int, list[str]] = {}  # position → the deltas merged into it (joined once, at the end)
    for item in batch:
        at = latest.get(item.job_id)
        # Only the job's own latest chunk may absorb this one, so each job's order is kept.
        if at is not None and type(item) is TokenDelta:
            prev = out[at]
            if type(prev) is TokenDelta and prev.index == item.index and prev.finish_reason is None:
                parts.setdefault(at, [prev.delta]).append(item.delta)
                # a fresh object: the published ones are never changed
                out[at] = TokenDelta(prev.job_id, prev.delta, prev.index, item.finish_reason, prev.emitted_at)
                continue
        latest[item.job_id] = len(out)
        out.append(item)
    for at, deltas in parts.items():
        out[at].delta = "".join(deltas)
    return out


class StreamWriter:
    """Coalesces chunks from many concurrent jobs into one Redis round trip per batch, on its own thread.

    The engine loop only appends to a deque, so token streaming never waits on the network; while one batch
    is in flight the next one accumulates (roughly one batch per engine step under load).
    """

    def __init__(self, store: StreamStore, max_batch: int = 4096, fence: str | None = None) -> None:
        self.store = store
        self.max_batch = max_batch
        self.fence = fence  # the worker's identity: its jobs' chunks go in only while their records name it
        self._pending: deque[Outgoing] = deque()
        self._cond = threading.Condition()
        self._idle = False  # the writer thread waits for chunks: only then does a publisher need to wake it
        self._in_flight = 0
        self._closed = False
        self.batches = 0
        self.chunks = 0  # published
        self.written = 0  # appended to Redis, after coalescing
        self.fenced = 0  # kept out: their jobs had been taken over by another worker
        self._fenced_jobs: OrderedDict[str, None] = OrderedDict()  # recent ones, for the log
        self._thread = threading.Thread(target=self._run, name="maoocr-stream-writer", daemon=True)
        self._thread.start()

    def publish(self, chunk: Outgoing, wake: bool = True) -> None:
        """Queue a chunk. `wake=False` leaves the writer asleep until the caller's `wake()`: the engine loop
        publishes a whole engine step's chunks and wakes the writer once, rather than once per chunk (a wake per
        chunk made the two threads trade the GIL for every token)."""
        self._pending.append(chunk)  # atomic: no lock on the per-token path
        if wake:
            self.wake()

    def wake(self) -> None:
        # Only a sleeping writer needs it; it raises `_idle` before its last look at the deque, so none is missed.
        if self._idle:
            with self._cond:
                self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every chunk published so far is in Redis."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._in_flight:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("stream writer could not flush")

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._idle = True
                    if not self._pending:
                        self._cond.wait(1.0)
                    self._idle = False
                if self._closed and not self._pending:
                    return
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), self.max_batch))]
                self._in_flight = len(batch)
            merged = coalesce(batch)
            self._write(merged)
            with self._cond:
                self._in_flight = 0
                self.batches += 1
                self.chunks += len(batch)
                self.written += len(merged)
                self._cond.notify_all()

    def _write(self, batch: list[Outgoing]) -> None:
        delay = 0.05
        batch_id = new_batch_id()  # the same for every try: a try Redis ran but whose reply was lost counts once
        while True:
            try:
                seqs = self.store.append(batch, batch_id, self.fence)
                break
            except (redis.ConnectionError, redis.TimeoutError):
                # Redis is away: keep the chunks (nothing accepted is dropped) and retry with back-off.
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        if FENCED in seqs:  # rare: one look at C speed on the per-batch path
            self.fenced += seqs.count(FENCED)
            for job_id in dict.fromkeys(chunk.job_id for chunk, seq in zip(batch, seqs) if seq == FENCED):
                if job_id not in self._fenced_jobs:  # said once per job, not once per batch
                    log.warning("job=%s taken over by another worker: this worker's stream chunks are dropped",
                                job_id)
                self._fenced_jobs[job_id] = None
                while len(self._fenced_jobs) > 1000:
                    self._fenced_jobs.popitem(last=False)
