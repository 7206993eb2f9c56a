"""Streams on a real Redis: Redis-assigned seqs, replay + live without loss or repeats, coalesced writes."""

from __future__ import annotations

import json
import threading
import uuid

from hypothesis import HealthCheck, given, settings, strategies as st

from maoocr.protocol.generation import StreamChunk
from maoocr.store.jobs import JobStore
from maoocr.store.keys import BATCHES_KEY, REPLAY_KEY
from maoocr.store.streams import StreamStore, StreamWriter, TokenDelta


def chunks(job_id: str, n: int) -> list[StreamChunk]:
    return [StreamChunk(job_id=job_id, delta=f"t{i} ", finished=i == n - 1) for i in range(n)]


def test_seq_is_assigned_by_redis_across_writers(redis_client):
    store = StreamStore(redis_client, ttl_s=60)
    job = uuid.uuid4().hex
    threads = [threading.Thread(target=store.append, args=([StreamChunk(job_id=job, delta=str(w))],))
               for w in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.seq for c in store.replay(job)] == list(range(20))
    assert 0 < redis_client.ttl(REPLAY_KEY.format(job)) <= 60


def test_a_write_sent_again_is_appended_once(redis_client):
    """redis-py and the stream writer send a write again after a lost reply, which Redis may have run."""
    store = StreamStore(redis_client, ttl_s=60)
    job, other = uuid.uuid4().hex, uuid.uuid4().hex
    batch = [StreamChunk(job_id=job, delta="a"), StreamChunk(job_id=job, delta="b")]
    assert store.append(batch, batch_id="sent-twice") == [0, 1]
    assert store.append(batch, batch_id="sent-twice") == [-1, -1]  # reads [2, 3] without the batch ids
    assert store.append([*batch, StreamChunk(job_id=other, delta="c")], batch_id="sent-twice") == [-1, -1, 0]
    assert [c.delta for c in store.replay(job)] == ["a", "b"]
    assert store.append(batch) == [2, 3]  # the same chunks in a new write are a new write
    assert 0 < redis_client.ttl(BATCHES_KEY.format(job)) <= 60


def test_follower_that_joins_midway_gets_every_chunk_once(redis_client):
    store = StreamStore(redis_client, ttl_s=60)
    job = uuid.uuid4().hex
    all_chunks = chunks(job, 200)
    store.append(all_chunks[:50])
    received: list[StreamChunk] = []
    follower = threading.Thread(target=lambda: received.extend(store.follow(job, timeout_s=20)))
    follower.start()
    for i in range(50, 200, 7):
        store.append(all_chunks[i:i + 7])
    follower.join(30)
    assert [c.seq for c in received] == list(range(200))
    assert [c.delta for c in received] == [c.delta for c in all_chunks]


# The Redis client fixture is safe to reuse across examples: every example writes to its own job id.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=15), st.integers(-1, 40))
def test_replay_after_any_point_is_the_exact_tail(redis_client, batch_sizes, after):
    store = StreamStore(redis_client, ttl_s=60)
    job = uuid.uuid4().hex
    sent: list[str] = []
    for size in batch_sizes:
        batch = [StreamChunk(job_id=job, delta=f"{len(sent) + i}") for i in range(size)]
        sent += [c.delta for c in batch]
        store.append(batch)
    store.append([StreamChunk(job_id=job, finished=True, event="end")])
    end_seq = len(sent)
    got = list(store.follow(job, after=after, timeout_s=5))
    if after >= end_seq:  # resuming after the end: an empty, finished stream, not a hang
        assert got == []
        return
    assert [c.delta for c in got[:-1]] == sent[after + 1:]
    assert got[-1].finished and [c.seq for c in got] == list(range(after + 1, end_seq + 1))


def test_writer_coalesces_many_jobs_into_few_round_trips(redis_client):
    store = StreamStore(redis_client, ttl_s=60)
    writer = StreamWriter(store)
    jobs = [uuid.uuid4().hex for _ in range(32)]
    for step in range(50):
        for job in jobs:
            writer.publish(TokenDelta(job, str(step)))
    writer.close()
    assert writer.chunks == 1600 and writer.batches < 1600 / 10
    for job in jobs:
        assert "".join(c.delta for c in store.replay(job)) == "".join(str(s) for s in range(50))


def test_cancelling_a_queued_job_ends_its_stream(redis_client):
    streams = StreamStore(redis_client, ttl_s=60)
    jobs = JobStore(redis_client, ttl_s=60)
    record = jobs.create("generation", model="m")
    assert jobs.cancel(record.id, streams).status == "cancelled"
    assert [(c.finished, c.finish_reason) for c in streams.replay(record.id)] == [(True, "cancelled")]
    # A worker arriving later may not claim it.
    assert jobs.transition(record.id, ("queued",), "running") == (False, "cancelled")
    # Cancelling again changes nothing and adds no second end chunk.
    jobs.cancel(record.id, streams)
    assert len(streams.replay(record.id)) == 1


def test_writer_behind_merges_each_jobs_token_deltas_in_order():
    from maoocr.store.streams import coalesce

    a, b = "job-a", "job-b"
    batch = [TokenDelta(a, "x", emitted_at=1.0), TokenDelta(b, "1"), TokenDelta(a, "y", emitted_at=2.0),
             TokenDelta(a, "z", index=1), TokenDelta(a, "w", index=1),
             TokenDelta(b, "2", finish_reason="length"), TokenDelta(b, "3"),
             StreamChunk(job_id=a, event="end", finished=True, finish_reason="stop"), TokenDelta(a, "v")]
    published = [(t.delta, t.finish_reason) for t in batch if isinstance(t, TokenDelta)]
    merged = coalesce(batch)
    rows = [(c.job_id, c.index, c.delta, c.finish_reason, getattr(c, "event", "token")) for c in merged]
    assert rows == [(a, 0, "xy", None, "token"), (b, 0, "12", "length", "token"), (a, 1, "zw", None, "token"),
                    (b, 0, "3", None, "token"), (a, 0, "", "stop", "end"), (a, 0, "v", None, "token")]
    assert merged[0].emitted_at == 1.0  # the oldest token's emit time
    assert [(t.delta, t.finish_reason) for t in batch if isinstance(t, TokenDelta)] == published  # unchanged


def test_token_deltas_go_on_the_wire_as_stream_chunks():
    from maoocr.store.streams import token_json

    token = TokenDelta("job-ü", "naïve 中文 \"q\"\n 100%s %d", index=2, finish_reason="stop", emitted_at=1732450000.25)
    wire = token_json(token)
    assert wire.startswith('{"job_id":') and '"seq":-1' in wire
    assert StreamChunk.model_validate_json(wire) == StreamChunk(
        job_id="job-ü", delta="naïve 中文 \"q\"\n 100%s %d", index=2, finish_reason="stop", emitted_at=1732450000.25)
    assert json.loads(wire).keys() == StreamChunk.model_fields.keys()


def test_writer_under_load_keeps_every_jobs_text(redis_client):
    store = StreamStore(redis_client, ttl_s=60)
    writer = StreamWriter(store)
    jobs = [uuid.uuid4().hex for _ in range(8)]
    for i in range(300):
        for job in jobs:
            writer.publish(TokenDelta(job, f"{i},"))
    for job in jobs:
        writer.publish(StreamChunk(job_id=job, event="end", finished=True, finish_reason="length"))
    writer.close()
    expected = "".join(f"{i}," for i in range(300))
    for job in jobs:
        replay = store.replay(job)
        assert [c.seq for c in replay] == list(range(len(replay)))
        assert "".join(c.delta for c in replay) == expected and replay[-1].finished
    # 2,408 chunks were published; a writer that cannot keep up merged them (a Redis round trip takes far
    # longer than publishing one chunk), so fewer went to Redis.
    assert writer.chunks == 8 * 301 and writer.written < writer.chunks


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 6)), min_size=1, max_size=25), st.integers(-1, 30))
def test_live_follower_sees_its_job_in_order_among_interleaved_jobs(redis_client, batches, after):
    """Appends of three jobs interleave in random batches while a follower is live: it gets exactly its own
    job's chunks after `after`, in order, each once, ending with the end chunk."""
    store = StreamStore(redis_client, ttl_s=60)
    jobs = [uuid.uuid4().hex for _ in range(3)]
    sent: dict[str, list[str]] = {job: [] for job in jobs}
    # Resume points a client can hold: before the end chunk (after the end is covered above, without races).
    after = min(after, sum(size for which, size in batches if which == 0) - 1)
    received: list[StreamChunk] = []
    follower = threading.Thread(target=lambda: received.extend(store.follow(jobs[0], after=after, timeout_s=20)))
    follower.start()
    for which, size in batches:
        batch = []
        for _ in range(size):
            job = jobs[which]
            batch.append(StreamChunk(job_id=job, delta=f"{job[:4]}-{len(sent[job])}"))
            sent[job].append(batch[-1].delta)
        store.append(batch)
    store.append([StreamChunk(job_id=jobs[0], finished=True, event="end")])
    follower.join(30)
    assert not follower.is_alive()
    mine = sent[jobs[0]]
    assert [c.delta for c in received[:-1]] == mine[after + 1:] and received[-1].finished
    assert [c.seq for c in received] == list(range(after + 1, len(mine) + 1))
