"""Script calls from many threads at once go to Redis together, and each caller still gets its own answer."""

from __future__ import annotations

import threading

import pytest
import redis

from maoocr.combined_calls import CombinedCalls

# Sleeps inside Redis (a busy loop: Lua has no sleep) so that calls made meanwhile queue up behind it.
SLOW_INCR = """
local stop_at = redis.call('TIME')[1] * 1000000 + redis.call('TIME')[2] + tonumber(ARGV[2])
while redis.call('TIME')[1] * 1000000 + redis.call('TIME')[2] < stop_at do end
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


def call_from_threads(combined: CombinedCalls, script, calls: list[tuple[str, str]]) -> list:
    """Every call from its own thread, all released at once; each thread's answer or exception, in order."""
    answers: list = [None] * len(calls)
    go = threading.Event()

    def one(i: int, key: str, arg: str) -> None:
        go.wait()
        try:
            answers[i] = combined.call(script, [key], [arg, 2000])
        except redis.RedisError as exc:
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i, *c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(30)
    return answers


def test_concurrent_calls_share_round_trips_and_keep_their_own_answers(redis_client):
    combined = CombinedCalls(redis_client)
    script = redis_client.register_script(SLOW_INCR)
    calls = [(f"combined:{i % 10}", "1") for i in range(200)] + [("combined:x", "fail")] * 3

    answers = call_from_threads(combined, script, calls)

    assert [int(redis_client.get(f"combined:{k}")) for k in range(10)] == [20] * 10
    for key in range(10):  # each key's 20 increments answered 1..20, once each
        assert sorted(a for a, (k, _) in zip(answers, calls) if k == f"combined:{key}") == list(range(1, 21))
    failures = [a for a, (_, arg) in zip(answers, calls) if arg == "fail"]
    assert all(isinstance(f, redis.ResponseError) and "asked to fail" in str(f) for f in failures)
    assert combined.round_trips < len(calls) / 4, combined.round_trips


def test_a_lone_call_and_a_flushed_script_behave_as_a_direct_call(redis_client):
    combined = CombinedCalls(redis_client)
    script = redis_client.register_script(SLOW_INCR)
    assert combined.call(script, ["combined:lone"], ["5", 0]) == 5
    redis_client.script_flush()  # Redis lost its scripts (a restart): batched calls load them again
    assert call_from_threads(combined, script, [("combined:lone", "1")] * 20)[-1] is not None
    assert int(redis_client.get("combined:lone")) == 25
    with pytest.raises(redis.ResponseError, match="asked to fail"):
        combined.call(script, ["combined:lone"], ["fail", 0])
