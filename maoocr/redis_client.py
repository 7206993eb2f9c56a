"""The one place Redis clients are made: pooled, from a URL (redis://, rediss:// with TLS, passwords in the URL)."""

from __future__ import annotations

import threading

import redis
import redis.asyncio as aioredis

_pools: dict[str, redis.ConnectionPool] = {}
_lock = threading.Lock()


def connect(url: str) -> redis.Redis:
    """A client on a shared per-URL pool, so request handlers never pay for a new connection."""
    with _lock:
        pool = _pools.get(url)
        if pool is None:
            pool = redis.ConnectionPool.from_url(url, decode_responses=True, health_check_interval=30,
                                                 socket_connect_timeout=5, retry_on_timeout=True)
            _pools[url] = pool
    return redis.Redis(connection_pool=pool)


def connect_async(url: str) -> aioredis.Redis:
    """An asyncio client; each event loop needs its own, so this is not cached."""
    return aioredis.from_url(url, decode_responses=True, health_check_interval=30, socket_connect_timeout=5)
