"""Quotas per API key, checked when a job is submitted: tokens per UTC day and jobs in flight."""

from __future__ import annotations

import redis

from maoocr.config import Settings
from maoocr.errors import QuotaExceeded
from maoocr.store.usage import UsageStore, seconds_to_utc_midnight, utc_today

IN_FLIGHT_RETRY_S = 2  # a job in flight usually ends within seconds


def enforce_quotas(settings: Settings, client: redis.Redis, owner: str | None) -> None:
    """Raise QuotaExceeded when the key `owner` may not start another job now. A job without a key is never refused.

    The job that crosses the daily limit runs to its end (its size is not known before it runs); the jobs after it
    are refused until midnight UTC. Two submissions racing for a key's last slot in flight may both pass."""
    if owner is None:
        return
    quota = settings.quotas.for_key(owner)
    usage = UsageStore(client)
    if quota.tokens_per_day is not None:
        used = usage.tokens_on(utc_today(), owner)
        if used >= quota.tokens_per_day:
            raise QuotaExceeded(f"this API key used {used} tokens today (UTC), its quota is tokens_per_day="
                                f"{quota.tokens_per_day}; it resets at midnight UTC", seconds_to_utc_midnight())
    if quota.jobs_in_flight is not None:
        running = usage.in_flight(owner, quota.jobs_in_flight)
        if running >= quota.jobs_in_flight:
            raise QuotaExceeded(f"this API key has {running} jobs queued or running, its quota is jobs_in_flight="
                                f"{quota.jobs_in_flight}; retry once one has ended", IN_FLIGHT_RETRY_S)
