"""A due set: ids in a Redis sorted set scored by when each is next due. Taking one leases it (its score moves past
the lease in the same step), so a taker that dies leaves it to another once the lease has run out."""

from __future__ import annotations

import time

import redis

# KEYS: the set. ARGV: now, lease seconds, how many. The due ids, each leased in the same step.
_LEASE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id) end
return due
"""


class DueSet:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self.redis = client
        self.key = key
        self._lease = client.register_script(_LEASE)

    def lease(self, lease_s: float, count: int) -> list[str]:
        """Up to `count` due ids, each held for `lease_s`."""
        return list(self._lease(keys=[self.key], args=[time.time(), lease_s, count]))

    def add(self, member: str, at: float = 0.0) -> None:
        """Due at `at` (now by default), unless it is in the set already (a lease held is kept)."""
        self.redis.zadd(self.key, {member: at}, nx=True)

    def reschedule(self, member: str, at: float) -> None:
        """Due at `at` if that is sooner than now planned; a member removed meanwhile stays removed. (A wake-up
        that came while its holder worked, a score of 0, wins over the holder's later plan.)"""
        self.redis.zadd(self.key, {member: at}, xx=True, lt=True)

    def schedule(self, member: str, at: float) -> None:
        """Due at `at`, sooner or later than now planned, if it is still in the set."""
        self.redis.zadd(self.key, {member: at}, xx=True)

    def remove(self, member: str) -> None:
        self.redis.zrem(self.key, member)
