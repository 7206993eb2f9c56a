"""The one place Redis clients are made: pooled, from a URL (redis://, rediss:// with TLS, passwords in the URL)."""

from __future__ import annotations

import threading
import time

import redis
import redis.asyncio as aioredis

MAX_CONNECTIONS = 2048
_pools: dict[tuple[str, bool], redis.ConnectionPool] = {}
_lock = threading.Lock()


def connect(url: str, decode: bool = True) -> redis.Redis:
    """A client on a shared per-URL pool, so request handlers never pay for a new connection.

    `decode=False` gives bytes back (document uploads); everything else is text.
    """
    with _lock:
        pool = _pools.get((url, decode))
        if pool is None:
            # Blocking: at the cap a caller waits for a free connection instead of failing (redis-py's
            # default pool raises "Too many connections" at 100, which 512 concurrent jobs reach).
            pool = redis.BlockingConnectionPool.from_url(url, decode_responses=decode, health_check_interval=30,
                                                         socket_connect_timeout=5, retry_on_timeout=True,
                                                         max_connections=MAX_CONNECTIONS, timeout=30)
            _pools[(url, decode)] = pool
    return redis.Redis(connection_pool=pool)


def connect_async(url: str) -> aioredis.Redis:
    """An asyncio client; each event loop needs its own, so this is not cached."""
    return aioredis.from_url(url, decode_responses=True, health_check_interval=30, socket_connect_timeout=5)


def subscribe_confirmed(pubsub: redis.client.PubSub, channel: str, timeout_s: float = 5.0) -> None:
    """Subscribe and wait for Redis to confirm, so a read made next cannot miss a message sent in between.

    The PubSub must not be created with ignore_subscribe_messages=True (the confirmation is what we wait for).
    """
    pubsub.subscribe(channel)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "subscribe":
            return
    raise TimeoutError(f"Redis did not confirm the subscription to {channel}")
