"""Script calls from many threads at once go to Redis together, and each caller still gets its own answer."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from maoocr.store.client import connect
from maoocr.store.combined_calls import CombinedCalls
from maoocr.store.jobs import JobStore
from maoocr.store.keys import JOB_KEY, WORKER_KEY

# Sleeps inside Redis (a busy loop: Lua has no sleep) so that calls made meanwhile queue up behind it.
SLOW_INCR = """
local stop_at = redis.call('TIME')[1] * 1000000 + redis.call('TIME')[2] + tonumber(ARGV[2])
while redis.call('TIME')[1] * 1000000 + redis.call('TIME')[2] < stop_at do end
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


def in_threads(calls: list, hold: tuple | None = None) -> list:
    """Each call (a function) from its own thread, all let go at once; each answer or exception, in order.
    `hold` = (combined, script): one slow call sent first, so that all the others wait for the next round trip."""
    answers: list = [None] * len(calls)
    go = threading.Event()

    def one(i: int) -> None:
        go.wait()
        try:
            answers[i] = calls[i]()
        except redis.RedisError as exc:
            answers[i] = exc

    holder = None
    if hold is not None:
        combined, script = hold
        holder = threading.Thread(target=combined.call, args=(script, ["combined:hold"], ["1", 300_000]), daemon=True)
        holder.start()
        time.sleep(0.05)  # its round trip is in flight
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads + ([holder] if holder else []):
        thread.join(30)
        assert not thread.is_alive(), "a combined call never returned"
    return answers


def test_concurrent_calls_share_round_trips_and_keep_their_own_answers(redis_client):
    combined = CombinedCalls(redis_client)
    script = redis_client.register_script(SLOW_INCR)
    calls = [(f"combined:{i % 10}", "1") for i in range(200)] + [("combined:x", "fail")] * 3

    answers = in_threads([lambda k=k, a=a: combined.call(script, [k], [a, 2000]) for k, a in calls])

    assert [int(redis_client.get(f"combined:{k}")) for k in range(10)] == [20] * 10
    for key in range(10):  # each key's 20 increments answered 1..20, once each
        assert sorted(a for a, (k, _) in zip(answers, calls) if k == f"combined:{key}") == list(range(1, 21))
    failures = [a for a, (_, arg) in zip(answers, calls) if arg == "fail"]
    assert all(isinstance(f, redis.ResponseError) and "asked to fail" in str(f) for f in failures)
    assert combined.round_trips < len(calls) / 4, combined.round_trips


def test_a_lone_call_behaves_as_a_direct_call(redis_client):
    combined = CombinedCalls(redis_client)
    script = redis_client.register_script(SLOW_INCR)
    assert combined.call(script, ["combined:lone"], ["5", 0]) == 5
    with pytest.raises(redis.ResponseError, match="asked to fail"):
        combined.call(script, ["combined:lone"], ["fail", 0])
    with pytest.raises(redis.DataError):
        combined.call(script, ["combined:lone"], [None, 0])
    assert combined.round_trips == 3


def test_scripts_redis_lost_are_loaded_once_and_sent_again(redis_client):
    combined = CombinedCalls(redis_client)
    hold = redis_client.register_script(SLOW_INCR)
    hold(keys=["combined:hold"], args=["1", 0])  # loaded; the one under test is not (a restarted Redis)
    fresh = redis_client.register_script(SLOW_INCR + "-- another script")
    assert redis_client.script_exists(fresh.sha) == [False]

    answers = in_threads([lambda: combined.call(fresh, ["combined:fresh"], ["1", 0])] * 10, hold=(combined, hold))

    assert sorted(answers) == list(range(1, 11))
    assert combined.round_trips == 2  # the held call alone, then the ten in one pipeline that met NOSCRIPT


def test_one_bad_argument_fails_its_own_call_only(redis_client):
    combined = CombinedCalls(redis_client)
    script = redis_client.register_script(SLOW_INCR)
    calls = [lambda: combined.call(script, ["combined:bad"], ["1", 0])] * 3
    calls.append(lambda: combined.call(script, ["combined:bad"], [None, 0]))
    try:
        answers = in_threads(calls, hold=(combined, script))
    except redis.DataError as exc:  # not a RedisError subclass in every redis-py: keep the failure readable
        pytest.fail(f"DataError escaped: {exc}")
    assert sorted(answers[:3]) == [1, 2, 3]
    assert int(redis_client.get("combined:bad")) == 3


def test_a_pipeline_sent_again_after_a_lost_reply_claims_each_job_once(own_redis, monkeypatch):
    """redis-py sends a whole pipeline again when its connection breaks mid-reply, so calls that already ran run
    twice: each claim must still answer its first attempt (not 'busy' for itself), each move its first answer."""
    client = connect(own_redis, patient=True)  # the worker's client: it sends a command again after a lost reply
    client.set(WORKER_KEY.format("w1"), json.dumps({"instance": "tok"}))
    jobs = JobStore(client, 600)
    ids = [jobs.create("generation", model="m").id for _ in range(8)]
    warm = jobs.create("generation", model="m").id  # a lone claim and move: Redis has both scripts loaded, so the
    jobs.claim(warm, "w1 tok")  # broken pipeline runs them (rather than answering NOSCRIPT)
    jobs.transition(warm, ("running",), "succeeded", fence="w1 tok")
    broken = {"replies": 0}
    parse = redis.client.Pipeline.parse_response

    def reply_lost_after_three(self, connection, command_name, **options):
        broken["replies"] += 1
        if broken["replies"] == 4:
            raise redis.ConnectionError("connection reset (injected after 3 replies were read)")
        return parse(self, connection, command_name, **options)

    monkeypatch.setattr(redis.client.Pipeline, "parse_response", reply_lost_after_three)
    hold = (jobs._combined, client.register_script(SLOW_INCR))

    claims = in_threads([lambda j=j: jobs.claim(j, "w1 tok") for j in ids], hold=hold)
    assert broken["replies"] > 8  # the pipeline was sent again
    assert [(c.attempt, c.before) for c in claims] == [(1, "queued")] * 8
    assert [client.hget(JOB_KEY.format(j), "attempts") for j in ids] == ["1"] * 8

    broken["replies"] = 0
    moves = in_threads([lambda j=j: jobs.transition(j, ("running",), "succeeded", fence="w1 tok") for j in ids],
                       hold=hold)
    assert broken["replies"] > 8
    assert moves == [(True, "running")] * 8


def test_the_claims_benchmark_claims_every_job_both_ways():
    from bench import burst_claims

    figures = {f["metric"]: f for f in burst_claims.run(jobs=32, rounds=1)}
    assert set(figures) == {"claims_per_thread_last_s", "claims_combined_last_s", "claims_combined_speedup"}
    assert figures["claims_per_thread_last_s"]["value"] > 0 and figures["claims_combined_last_s"]["value"] > 0


def test_the_burst_end_benchmark_answers_every_waiting_request():
    from bench import burst_end

    [figure] = burst_end.run(burst_end.BurstEndOptions(jobs=16, rounds=1, client_processes=1))
    assert figure["metric"] == "burst_end_tail_s" and figure["value"] >= 0
    [round_] = figure["rounds"]
    assert round_["api_cpu_ms_per_request"] > 0
