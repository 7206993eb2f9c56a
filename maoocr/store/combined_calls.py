"""Redis script calls made by many threads at once, sent in one pipeline per round trip (group commit).

A burst of jobs reaches as many worker threads at once, and each claims its job, and later stores its outcome,
with one Lua script call. Made one round trip per thread, those calls queue for the GIL beside the engine's event
loop after every socket wait, so the last of a burst is answered late. The first caller sends its call at once (a
lone call costs what a direct one does) and whoever arrives while that round trip is in flight waits for the next
one, which carries all of them.

A pipeline whose reply is lost is sent again whole by redis-py, so every script sent through here must be safe to
run twice (JobStore's are: each call carries an id, or the script checks before it writes).

A call made `replicated` ends its round trip with Redis's WAIT for `wait_replicas` replicas (one WAIT covers every
write before it on that connection, so a whole round trip of new jobs waits once).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)


class RoundTripLost(RuntimeError):
    """The round trip carrying this call ended without an answer for it (its sender was interrupted)."""


class _Call:
    __slots__ = ("script", "keys", "args", "replicated", "done", "lead", "result", "error")

    def __init__(self, script: Script | None, keys: Sequence[str], args: Sequence[Any],
                 replicated: bool = False) -> None:
        self.script = script  # None: `args` is a plain command
        self.keys = keys
        self.args = args
        self.replicated = replicated
        self.done = threading.Event()
        self.lead = False  # woken to send the next round trip rather than with an answer
        self.result: Any = None
        self.error: BaseException | None = RoundTripLost("the combined round trip ended without an answer")

    def answer(self, result: Any) -> None:
        if isinstance(result, Exception):
            self.error = result
        else:
            self.result, self.error = result, None


class CombinedCalls:
    """`call(script, keys, args)` returns what `script(keys=keys, args=args)` would, or raises what it would.

    One round trip is in flight at a time; calls made meanwhile wait and go together in the next one, sent by the
    first of them (no thread of its own). Each call is still its own EVALSHA: atomic alone, not with the others.
    """

    def __init__(self, client: redis.Redis, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self.client = client
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._in_flight = False
        self.round_trips = 0  # for tests and benchmarks: how many batches (pipelines or lone calls) were sent

    def call(self, script: Script, keys: Sequence[str], args: Sequence[Any], replicated: bool = False) -> Any:
        """`replicated`: answered once `wait_replicas` replicas have the write (or the wait timed out)."""
        return self._submit(_Call(script, keys, args, replicated and self.wait_replicas > 0))

    def command(self, *args: Any) -> Any:
        """A plain command (`command("HGETALL", key)`), answered as `client.execute_command` would answer it."""
        return self._submit(_Call(None, (), args))

    def _submit(self, own: _Call) -> Any:
        with self._lock:
            self._waiting.append(own)
            lead = not self._in_flight
            self._in_flight = True
        if not lead:
            try:
                own.done.wait()
            except BaseException:  # interrupted while waiting: never leave the next round trip without a sender
                self._abandon(own)
                raise
            if not own.lead:
                return _outcome(own)
        self._send_waiting()
        return _outcome(own)

    def _abandon(self, own: _Call) -> None:
        with self._lock:
            chosen = own.lead
            if not chosen and own in self._waiting:
                self._waiting.remove(own)
        if chosen:  # picked to send the next round trip: send it, for the others waiting on it
            self._send_waiting()

    def _send_waiting(self) -> None:
        """Send everything waiting (this caller's call among it), then hand the next round trip on."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._send(batch)
        finally:
            with self._lock:
                following = self._waiting[0] if self._waiting else None
                self._in_flight = following is not None
                if following is not None:  # it sends the calls that arrived during this round trip
                    following.lead = True
            for item in batch:
                item.done.set()
            if following is not None:
                following.done.set()

    def _send(self, batch: list[_Call]) -> None:
        self.round_trips += 1
        if len(batch) == 1 and not batch[0].replicated:  # as a direct call: EVALSHA, loading the script if missing
            self._send_alone(batch[0])
            return
        try:
            results = self._pipeline(batch)
        except redis.DataError:  # an argument Redis cannot take: raised before anything was sent
            for item in batch:
                self._send_alone(item)
            return
        except Exception as exc:  # the round trip failed (after the client's own retries): every call fails
            for item in batch:
                item.error = exc
            return
        missing = [item for item, result in zip(batch, results) if isinstance(result, NoScriptError)]
        for item, result in zip(batch, results):
            if not isinstance(result, NoScriptError):
                item.answer(result)
        if missing:  # Redis restarted or flushed its scripts: those calls did not run; load once, send again
            try:
                for script in {id(item.script): item.script for item in missing}.values():
                    self.client.script_load(script.script)
                for item, result in zip(missing, self._pipeline(missing)):
                    item.answer(result)
            except Exception as exc:
                for item in missing:
                    item.error = exc

    def _pipeline(self, batch: list[_Call]) -> list[Any]:
        waits = [item for item in batch if item.replicated]
        with self.client.pipeline(transaction=False) as pipe:
            for item in batch:
                if item.script is None:
                    pipe.execute_command(*item.args)
                else:
                    pipe.evalsha(item.script.sha, len(item.keys), *item.keys, *item.args)
            if waits:  # on the same connection as the writes: WAIT counts the replicas that have them
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            results = pipe.execute(raise_on_error=False)
        if waits:
            acked = results.pop()
            if isinstance(acked, Exception) or acked < self.wait_replicas:
                log.warning("keys=%s: %s of %d replica(s) acknowledged within %d ms; a failover now may lose them",
                            ",".join(item.keys[0] for item in waits if item.keys), acked, self.wait_replicas,
                            self.wait_timeout_ms)
        return results

    def _send_alone(self, item: _Call) -> None:
        try:
            if item.script is None:
                item.answer(self.client.execute_command(*item.args))
            else:
                item.answer(item.script(keys=item.keys, args=item.args))
        except Exception as exc:
            item.error = exc


def _outcome(item: _Call) -> Any:
    if item.error is not None:
        raise item.error
    return item.result
