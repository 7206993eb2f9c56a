"""The one place Redis clients are made: pooled, from a URL (redis://, rediss:// with TLS, passwords in the URL)."""

from __future__ import annotations

import threading
import time

import redis
import redis.asyncio as aioredis

_pools: dict[tuple[str, bool], redis.ConnectionPool] = {}
_lock = threading.Lock()


def connect(url: str, decode: bool = True) -> redis.Redis:
    """A client on a shared per-URL pool, so request handlers never pay for a new connection.

    `decode=False` gives bytes back (document uploads); everything else is text.
    """
    with _lock:
        pool = _pools.get((url, decode))
        if pool is None:
            pool = redis.ConnectionPool.from_url(url, decode_responses=decode, health_check_interval=30,
                                                 socket_connect_timeout=5, retry_on_timeout=True)
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
