"""The LLM worker's batched intake (`workers.batched_intake`): a burst of queued jobs is taken in a few Redis round
trips, every job taken is recorded as unacknowledged the way kombu records it, their acks go in a few round trips
too, and a worker killed holding a burst loses none of it (kombu's own redelivery brings the jobs back).
"""

from __future__ import annotations

import json
import signal

import pytest
import redis

from bench.holding_worker import QUEUE, RELEASE, STARTED
from bench.intake import send
from devtools.processes import start_module, wait_until
from workers.batched_intake import POP_AND_RECORD

JOBS = 48


def command_calls(client: redis.Redis, command: str) -> int:
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def brpops(client: redis.Redis) -> int:
    return command_calls(client, "brpop")


def started(client: redis.Redis) -> list[int]:
    return sorted(int(entry.split()[0]) for entry in client.lrange(STARTED, 0, -1))


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "stock"])
def test_a_burst_is_taken_in_a_few_round_trips_and_recorded_as_unacked(broker, batched):
    client, app, env, logs = broker
    send(app, range(JOBS))  # queued before the worker starts: one burst
    before = brpops(client)
    worker = start_module("held", "bench.holding_worker",
                          ["--concurrency", str(JOBS), *(["--batched-intake"] if batched else [])], env, logs)
    try:
        wait_until(lambda: len(started(client)) == JOBS, [worker], timeout_s=60)
        intake_trips = brpops(client) - before
        if batched:
            assert intake_trips <= 4, f"{intake_trips} BRPOPs for a burst of {JOBS}"
        else:  # stock kombu: one per message (the same measure reads this high without the batching)
            assert intake_trips >= JOBS, intake_trips
        assert started(client) == list(range(JOBS))
        # Every running job is kombu-unacked (redelivered if this worker dies); none is left in the queue.
        assert client.llen(QUEUE) == 0
        assert client.hlen("unacked") == JOBS and client.zcard("unacked_index") == JOBS
        zrems = command_calls(client, "zrem")
        client.set(RELEASE, 1)  # every job ends within ~0.1 s
        wait_until(lambda: client.hlen("unacked") == 0, [worker], timeout_s=60)  # all acked
        assert client.zcard("unacked_index") == 0
        ack_trips = command_calls(client, "zrem") - zrems
        if batched:  # the records of one event-loop pass's acks go in one round trip
            assert ack_trips <= JOBS // 4, f"{ack_trips} ZREMs for {JOBS} acks"
        else:
            assert ack_trips >= JOBS, ack_trips
    finally:
        worker.stop()


@pytest.mark.parametrize("broker", [3600], indirect=True)  # no redelivery of the held jobs while counting
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "stock"])
def test_a_job_arriving_alone_is_recorded_in_the_round_trip_after_its_brpop(broker, batched):
    """An idle worker: each job comes alone. Stock kombu records it with a MULTI/EXEC pipeline on a client built for
    it; the batched intake records it in its one script call, in kombu's own format."""
    client, app, env, logs = broker
    worker = start_module("held", "bench.holding_worker",
                          ["--concurrency", "8", *(["--batched-intake"] if batched else [])], env, logs)
    try:
        send(app, [0])
        wait_until(lambda: len(started(client)) == 1, [worker], timeout_s=60)
        records = lambda: (command_calls(client, "exec"), command_calls(client, "eval"))  # noqa: E731
        before = records()
        for value in range(1, 5):
            send(app, [value])
            wait_until(lambda: len(started(client)) == value + 1, [worker], timeout_s=60)
        pipelines, scripts = (now - then for now, then in zip(records(), before))
        # kombu's refresh of the binding of Celery's remote-control queue (it expires) may add one MULTI/EXEC.
        if batched:
            assert pipelines <= 1 and scripts == 4, (pipelines, scripts)
        else:  # the same counts read >= 4 and 0 without the batching
            assert pipelines >= 4 and scripts == 0, (pipelines, scripts)
        assert started(client) == list(range(5))
        for tag, raw in client.hgetall("unacked").items():  # what kombu's QoS.append writes, and restores from
            message, exchange, routing_key = json.loads(raw)
            assert message["properties"]["delivery_tag"] == tag.decode()
            assert (exchange, routing_key) == (message["properties"]["delivery_info"]["exchange"], QUEUE)
        assert client.hlen("unacked") == 5 and client.zcard("unacked_index") == 5
    finally:
        worker.stop()


def test_a_killed_worker_loses_none_of_its_burst(broker):
    client, app, env, logs = broker
    send(app, range(JOBS))
    first = start_module("held-1", "bench.holding_worker", ["--concurrency", str(JOBS), "--batched-intake"],
                         env, logs)
    try:
        wait_until(lambda: len(started(client)) == JOBS, [first], timeout_s=60)
    finally:
        first.stop(signal.SIGKILL)
    client.delete(STARTED)
    client.set(RELEASE, 1)
    second = start_module("held-2", "bench.holding_worker", ["--concurrency", str(JOBS), "--batched-intake"],
                          env, logs)
    try:
        # Restored by kombu from the records the burst wrote (visibility timeout 2 s), run, and acked.
        wait_until(lambda: len(started(client)) == JOBS and client.hlen("unacked") == 0, [second], timeout_s=90)
        assert started(client) == list(range(JOBS))
    finally:
        second.stop()


def test_the_burst_stops_at_a_message_that_is_not_kombus_and_leaves_it_queued(broker):
    client, app, _, _ = broker
    send(app, range(3))
    client.lpush(QUEUE, b"not json")  # LPUSH: behind the three, as a producer's next message would be
    send(app, range(3, 5))
    first = client.rpop(QUEUE)  # as BRPOP would
    taken = client.eval(POP_AND_RECORD, 3, QUEUE, "unacked_index", "unacked", 100, 1.0, first)
    assert len(taken) == 2 and client.hlen("unacked") == 3 and client.zcard("unacked_index") == 3
    assert client.lrange(QUEUE, 0, -1)[-1] == b"not json"  # next for BRPOP, where stock kombu handles it
    assert client.llen(QUEUE) == 3
    # A BRPOP's message that is not kombu's is not recorded (nil: delivered the stock way) and nothing is popped.
    assert client.eval(POP_AND_RECORD, 3, QUEUE, "unacked_index", "unacked", 100, 1.0, b"not json") is None
    assert client.llen(QUEUE) == 3 and client.hlen("unacked") == 3
