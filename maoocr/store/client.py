"""The one place Redis clients are made: pooled, from a URL (redis://, rediss:// with TLS, passwords in the URL, or
sentinel:// for a Sentinel-managed master, `maoocr.store.sentinel`)."""

from __future__ import annotations

import threading
import time

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from maoocr.store.sentinel import async_sentinel_client, is_sentinel_url, parse_sentinel_url, sentinel_pool

MAX_CONNECTIONS = 2048
# A worker outlives a Redis outage of up to ~10 minutes inside one command (300 tries, 2 s apart at most)
# instead of failing the job it is finishing; the API instead fails fast and answers 503.
PATIENT_RETRIES = 300
_pools: dict[tuple[str, bool, bool], redis.ConnectionPool] = {}
_lock = threading.Lock()


def connect(url: str, decode: bool = True, patient: bool = False) -> redis.Redis:
    """A client on a shared per-URL pool, so request handlers never pay for a new connection.

    `decode=False` gives bytes back (document uploads); everything else is text. `patient=True` (workers)
    retries a command through a Redis outage, reconnecting (and re-subscribing pub/sub) when Redis is back.
    """
    with _lock:
        pool = _pools.get((url, decode, patient))
        if pool is None:
            retry = (Retry(ExponentialBackoff(cap=2.0, base=0.05), PATIENT_RETRIES) if patient
                     else Retry(ExponentialBackoff(cap=0.2, base=0.05), 1))
            # Blocking: at the cap a caller waits for a free connection instead of failing (redis-py's
            # default pool raises "Too many connections" at 100, which 512 concurrent jobs reach).
            # socket_timeout: a Redis that hangs (not refuses) must not hang a request; no command here blocks
            # server-side (pub/sub reads pass their own, shorter timeouts).
            options = dict(decode_responses=decode, health_check_interval=30, socket_connect_timeout=5,
                           socket_timeout=30, socket_keepalive=True, retry=retry,
                           retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                           max_connections=MAX_CONNECTIONS, timeout=30)
            # A Sentinel pool asks the Sentinels for the master on every new connection; the retries above then
            # carry a command across a failover as they carry it across an outage.
            pool = (sentinel_pool(parse_sentinel_url(url), **options) if is_sentinel_url(url)
                    else redis.BlockingConnectionPool.from_url(url, **options))
            _pools[(url, decode, patient)] = pool
    return redis.Redis(connection_pool=pool)


def connect_async(url: str) -> aioredis.Redis:
    """An asyncio client; each event loop needs its own, so this is not cached."""
    options = dict(decode_responses=True, health_check_interval=30, socket_connect_timeout=5)
    if is_sentinel_url(url):
        return async_sentinel_client(parse_sentinel_url(url), **options)
    return aioredis.from_url(url, **options)


def probe_client(url: str, timeout_s: float = 1.0) -> redis.Redis:
    """A one-off client for a quick check (`maoocr up`: does this Redis answer?), never pooled or retried."""
    if is_sentinel_url(url):
        options = dict(socket_connect_timeout=timeout_s, socket_timeout=timeout_s, max_connections=1)
        return redis.Redis(connection_pool=sentinel_pool(parse_sentinel_url(url), **options))
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s)


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
