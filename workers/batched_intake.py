"""Kombu's Redis transport, taking a burst of queued tasks in one round trip instead of two per task.

Stock kombu gets one message per BRPOP and then records it as unacked (a second round trip, on a Redis client built
for it), in the consumer thread. In an LLM worker that thread shares the GIL with the engine's event loop and queues
for it again after every socket wait, so a burst of jobs reaches the engine slowly, one GIL wait at a time. Here,
after each BRPOP, one Lua script records the message BRPOP returned and pops as many more from the same queue key as
the worker has prefetch credit for, recording each in kombu's own unacked index and hash exactly as `QoS.append`
would, in the same atomic step (stock kombu loses a message popped but not yet recorded if the worker dies in
between; the burst does not, and the BRPOP's message has the same short window as stock).
Acks are batched too: the records of all acks within a few milliseconds are deleted in one round trip (`QoS.ack`).
Rejects, redelivery of a dead worker's messages and the restore at shutdown stay kombu's: they read the same
records.

Priorities (maoocr.priorities): BRPOP reads a queue's lists most urgent first, and a burst takes more of the list
BRPOP returned. The last `interactive_reserve` slots of prefetch credit are kept for the lists more urgent than
`bulk_step`: while no more credit than that is free, BRPOP watches only those lists (with a short timeout, so bulk
work is taken again as soon as credit frees), and a burst from a bulk list leaves them free. A worker saturated with
bulk jobs so always has engine slots for an interactive one, which starts at the engine's next step.

Consumers only: the worker's Celery app sets `broker_transport` to this module's `Transport` (or
`SentinelTransport`, which every app on a sentinel:// Redis URL uses: kombu's stock Sentinel channel stops the
worker when it is closed or acks after a failover). Limits: a job arriving while a burst is taken waits for that
burst; Celery's `worker_disable_prefetch` is not supported.
"""

from __future__ import annotations

import logging
import time
from queue import Empty

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger(__name__)

_REDIS_ERRORS = tuple(error for group in kombu_redis.get_redis_error_classes() for error in group)
ACK_FLUSH_S = 0.005  # acks gathered per round trip: at most ~200 trips a second, whatever the job rate
RESERVE_POLL_S = 0.05  # BRPOP's timeout while only urgent lists are watched: bulk work waits at most this for credit

# KEYS: queue key, unacked index, unacked hash. ARGV: how many more, now, the message BRPOP returned.
# The hash value is what QoS.append writes: JSON of [message, exchange, routing_key] from its delivery_info.
# Returns the messages popped here (not the BRPOP's), or nil when the BRPOP's message is not kombu's JSON and so
# was not recorded (the caller delivers it the stock way). One RPOP per message (RPOP with a count needs Redis
# 6.2). A popped message that is not kombu's JSON goes back where it was and ends the burst: the stock path takes
# it next and treats it as stock kombu does; nothing is dropped.
POP_AND_RECORD = """
local function record(item)
  local ok, message = pcall(cjson.decode, item)
  local properties = ok and type(message) == 'table' and message['properties']
  local info = type(properties) == 'table' and properties['delivery_info']
  if type(info) ~= 'table' or type(properties['delivery_tag']) ~= 'string' then
    return false
  end
  -- Encoded before anything is written: a value cjson cannot encode leaves no half-written record.
  local ok_exchange, exchange = pcall(cjson.encode, info['exchange'])
  local ok_key, routing_key = pcall(cjson.encode, info['routing_key'])
  if not (ok_exchange and ok_key) then
    return false
  end
  redis.call('ZADD', KEYS[2], ARGV[2], properties['delivery_tag'])
  redis.call('HSET', KEYS[3], properties['delivery_tag'], '[' .. item .. ',' .. exchange .. ',' .. routing_key .. ']')
  return true
end
if not record(ARGV[3]) then
  return false
end
local items = {}
for _ = 1, tonumber(ARGV[1]) do
  local item = redis.call('RPOP', KEYS[1])
  if not item then break end
  if not record(item) then
    redis.call('RPUSH', KEYS[1], item)
    break
  end
  items[#items + 1] = item
end
return items
"""


class QoS(kombu_redis.QoS):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: set[str] = set()  # tags POP_AND_RECORD already wrote to the unacked index
        self.acked: list[str] = []  # acked here, their unacked records not yet deleted in Redis
        self._flush_due = False  # a flush of `acked` is scheduled on the event loop
        self._ack_client: redis.Redis | None = None  # built once: kombu builds a client per call, on the GIL

    def append(self, message, delivery_tag) -> None:
        if delivery_tag in self.recorded:
            virtual.QoS.append(self, message, delivery_tag)  # the local bookkeeping only
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag) -> None:
        """Stock kombu deletes each acked message's unacked record in a round trip of its own, on a fresh client,
        in the consumer thread: a large share of a busy worker's GIL time. Here the prefetch credit comes back at
        once, and the records of all acks within ACK_FLUSH_S go in one round trip, on Celery's event loop. A
        record a crash leaves behind only means a redelivery after the visibility timeout, which the job's claim
        skips as already finished (a stock ack that fails does the same)."""
        virtual.QoS.ack(self, delivery_tag)
        self.acked.append(delivery_tag)
        hub = getattr(self.channel.connection, "hub", None)  # the connection is None once the channel closed
        if hub is None:
            self.flush_acks()  # not under Celery's event loop: as stock kombu does
        elif not self._flush_due:
            self._flush_due = True
            hub.call_later(ACK_FLUSH_S, self._due_flush)

    def _due_flush(self) -> None:
        self._flush_due = False
        self.flush_acks()

    def flush_acks(self) -> None:
        tags, self.acked = self.acked, []
        if not tags:
            return
        channel = self.channel
        try:
            if channel.connection is None:  # closed: an ack of a message from before a reconnect
                raise ConnectionError("channel closed")
            if self._ack_client is None:
                self._ack_client = channel._create_client()  # on the channel's pool, which reconnects
            self._ack_client.pipeline().zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags).execute()
        except (ConnectionError, *_REDIS_ERRORS) as exc:
            # Never raised: this runs in Channel.close too, which must go on to restore what is unacked.
            log.warning("could not delete %d acked message record(s) (%s); they come back after the visibility "
                        "timeout and are skipped as finished", len(tags), exc)


class Channel(kombu_redis.Channel):
    QoS = QoS
    bursts = True  # off for this channel once the server refuses the script
    interactive_reserve = 0  # prefetch credit kept for lists more urgent than bulk_step
    bulk_step = 10  # the first priority step that is bulk work (above every step: no reserve)
    from_transport_options = kombu_redis.Channel.from_transport_options + ("interactive_reserve", "bulk_step")

    def _brpop_start(self, timeout=None):
        """kombu's own, but over the urgent lists only (and briefly) while the free credit is the reserve's."""
        if not self._reserve_only():
            return super()._brpop_start(timeout)
        steps = self.priority_steps
        self.priority_steps = [step for step in steps if step < self.bulk_step]
        try:
            return super()._brpop_start(RESERVE_POLL_S)
        finally:
            self.priority_steps = steps

    def _reserve_only(self) -> bool:
        if not self.interactive_reserve:
            return False
        credit = self.qos.can_consume_max_estimate()
        return credit is not None and credit <= self.interactive_reserve

    def _credit_for(self, key: bytes) -> int:
        """How many more messages a burst may take from list `key` (the BRPOP's own one is counted)."""
        credit = self.qos.can_consume_max_estimate()
        if credit is None:
            return 1000
        queue_and_step = bytes_to_str(key).rsplit(self.sep, 1)
        step = int(queue_and_step[1]) if len(queue_and_step) == 2 and queue_and_step[1].isdigit() else 0
        if step >= self.bulk_step:
            credit -= self.interactive_reserve
        return max(credit - 1, 0)

    def _brpop_read(self, **options):
        """kombu's own, except that the message is recorded as unacked together with the burst that follows it
        (one round trip) once the BRPOP reply is fully read and the next BRPOP not yet sent, so the script can
        use the same connection."""
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next poll reconnects
                raise
            if not reply:
                raise Empty()
            key, item = reply
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            message = loads(bytes_to_str(item))
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        burst = self._record_and_pop(key, item) if self._may_burst(queue) else None
        if burst is None:  # not recorded: kombu's own delivery, whose QoS.append records it
            self.connection._deliver(message, queue)
        else:
            self._deliver_recorded([message, *self._parsed(burst)], queue)
        return True

    @staticmethod
    def _parsed(burst: list[bytes]) -> list[dict]:
        messages = []
        for item in burst:
            try:
                messages.append(loads(bytes_to_str(item)))
            except ValueError as exc:  # Lua's cjson took it, Python's JSON does not
                # It keeps its record: back on the queue after the visibility timeout, where BRPOP's path fails
                # on it as stock kombu does.
                log.warning("a queued message is not JSON (%s); left to the visibility timeout", exc)
        return messages

    def close(self) -> None:
        if self._qos is not None:
            self._qos.flush_acks()  # before kombu restores what is still unacked
        super().close()

    def _may_burst(self, queue: str) -> bool:
        """Not while closing, for a queue no longer consumed (kombu would reject the whole burst), with a key
        prefix, or without a live connection (a failed re-auth dropped it: the next poll reconnects)."""
        return (self.bursts and not self._closing and queue in self.connection._callbacks
                and not self.global_keyprefix and self.qos.can_consume()
                and self.client.connection is not None and self.client.connection._sock is not None)

    def _record_and_pop(self, key: bytes, item: bytes) -> list[bytes] | None:
        """Record the BRPOP's message and pop (and record) the burst behind it: the burst's raw messages, or None
        when the BRPOP's message was not recorded."""
        more = self._credit_for(key)
        # Sent and read like BRPOP, not through execute_command: redis-py would retry it on a timeout
        # (retry_on_timeout), and a second run would pop a second burst while the first reply was lost.
        connection = self.client.connection
        try:
            connection.send_command("EVAL", POP_AND_RECORD, 3, key, self.qos.unacked_index_key,
                                    self.qos.unacked_key, more, time.time(), item)
            return self.client.parse_response(connection, "EVAL")
        except self.connection_errors:
            # The next poll reconnects. A burst popped before the reply was lost is recorded, so redelivered;
            # the BRPOP's message goes the stock way now (recorded again, or lost with Redis, as in stock kombu).
            connection.disconnect()
            return None
        except redis.ResponseError as exc:  # scripting refused or failed: off for this channel (until reconnect)
            log.warning("batched intake off (%s); taking one job per round trip", exc)
            self.bursts = False
            return None

    def _deliver_recorded(self, messages: list[dict], queue: str) -> None:
        delivered = 0
        try:
            for message in messages:
                tag = message["properties"]["delivery_tag"]
                self.qos.recorded.add(tag)
                try:
                    self.connection._deliver(message, queue)
                finally:
                    self.qos.recorded.discard(tag)  # used by QoS.append during the delivery, or stale
                delivered += 1
        finally:
            # A delivery that raised: the messages after it go straight back to the head of the queue, in their
            # order, not after the visibility timeout (the one that raised keeps its record and comes back then).
            for message in reversed(messages[delivered + 1:]):
                self.qos.restore_by_tag(message["properties"]["delivery_tag"])


class Transport(kombu_redis.Transport):
    Channel = Channel
    hub = None  # Celery's event loop, once the consumer registers with it (acks are flushed on its timer)

    def register_with_event_loop(self, connection, loop) -> None:
        super().register_with_event_loop(connection, loop)
        self.hub = loop


class _ClosesWithoutItsTransport:
    """A Sentinel channel that survives being closed after its transport let go of the broker URL."""

    def close(self) -> None:
        if self.connection is not None and self.connection.client is None:
            # Celery closes a channel once more after a lost broker connection, when the transport has already let
            # go of the URL; kombu's Sentinel channel would need it to reach Redis and put unacked messages back,
            # and its AttributeError stops the worker. Leave them recorded: they come back after the visibility
            # timeout, as when Redis is down at close.
            self.do_restore = False
        super().close()


class SentinelChannel(_ClosesWithoutItsTransport, Channel, kombu_redis.SentinelChannel):
    """The same intake on a master found through Redis Sentinel (kombu's Sentinel pool, this module's reads)."""

    from_transport_options = tuple(dict.fromkeys(Channel.from_transport_options
                                                 + kombu_redis.SentinelChannel.from_transport_options))


class SentinelTransport(Transport):
    default_port = kombu_redis.SentinelTransport.default_port
    Channel = SentinelChannel
