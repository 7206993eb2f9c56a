"""Usage per API key in Redis: the Lua that counts a job once, in the step that ends it, and keeps a key's jobs in
flight (both run inside the job store's scripts), and the reads behind /v1/usage, /metrics and quotas."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import redis

from maoocr.store.keys import (IN_FLIGHT_KEY, JOB_KEY, USAGE_DAY_KEY, USAGE_OWNERS_KEY, USAGE_TOTALS_KEY,
                               USAGE_TTL_S, lua_key)

ANONYMOUS = "anonymous"  # the owner of jobs made while auth is off
OWNER_FIELDS = ("documents", "pages")  # a key's OCR counters; every other field is "<model>:<counter>"
MODEL_COUNTERS = ("prompt_tokens", "completion_tokens", "requests")

_DAY_KEY_LUA = "'{}' .. day .. '{}' .. owner".format(*USAGE_DAY_KEY.split("{}")[:2])  # USAGE_DAY_KEY in Lua

# Lua functions for the job store's scripts. `usage_day` reads the Redis server's clock, so every process counts
# into the same day. The civil date from days since 1970 is Howard Hinnant's `civil_from_days`.
LUA = """
local function usage_day()
  local z = math.floor(tonumber(redis.call('TIME')[1]) / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  return string.format('%04d-%02d-%02d', yoe + era * 400 + (m <= 2 and 1 or 0), m, d)
end

local function usage_owner(owner)
  if owner == false or owner == nil or owner == '' then return '""" + ANONYMOUS + """' end
  return owner
end

-- counts: field, n, field, n, ... added to today's hash of the owner and to the all-time totals.
local function add_usage(owner, counts)
  local day = usage_day()
  local key = """ + _DAY_KEY_LUA + """
  for i = 1, #counts, 2 do
    redis.call('HINCRBY', key, counts[i], counts[i + 1])
    redis.call('HINCRBY', '""" + USAGE_TOTALS_KEY + """', owner .. ':' .. counts[i], counts[i + 1])
  end
  redis.call('EXPIRE', key, """ + str(USAGE_TTL_S) + """)
  local owners = """ + lua_key(USAGE_OWNERS_KEY, "day") + """
  redis.call('SADD', owners, owner)
  redis.call('EXPIRE', owners, """ + str(USAGE_TTL_S) + """)
end

local function usage_decoded(raw)
  if not raw then return {} end
  local ok, value = pcall(cjson.decode, raw)  -- a bad field must never stop a job from ending
  if ok and type(value) == 'table' then return value end
  return {}
end

local function usage_int(value)
  if type(value) == 'number' then return math.floor(value) end
  return 0
end

-- A new job of a key (KEYS[1] its record, written already) is in flight.
local function usage_job_created(job_id)
  local found = redis.call('HMGET', KEYS[1], 'owner', 'created_at')
  if found[1] and found[1] ~= '' then
    redis.call('ZADD', """ + lua_key(IN_FLIGHT_KEY, "found[1]") + """, tonumber(found[2]) or 0, job_id)
  end
end

-- A job moved from `from` to the terminal status `to` (its last fields written already): no longer in flight, and
-- counted. A job cancelled before a worker took it did nothing and counts nothing.
local function usage_job_ended(job_id, from, to)
  local found = redis.call('HMGET', KEYS[1], 'kind', 'owner', 'model', 'result', 'progress')
  if found[2] and found[2] ~= '' then redis.call('ZREM', """ + lua_key(IN_FLIGHT_KEY, "found[2]") + """, job_id) end
  if from == 'queued' and to == 'cancelled' then return end
  local owner = usage_owner(found[2])
  if found[1] == 'ocr' then
    add_usage(owner, {'documents', 1, 'pages', usage_int(usage_decoded(found[5]).done)})
  else
    local usage = usage_decoded(found[4]).usage
    if type(usage) ~= 'table' then usage = {} end
    local model = (found[3] or 'unknown') .. ':'
    add_usage(owner, {model .. 'requests', 1, model .. 'prompt_tokens', usage_int(usage.prompt_tokens),
                      model .. 'completion_tokens', usage_int(usage.completion_tokens)})
  end
end
"""

# The tokens a cancelled generation used before its worker stopped it: the cancel ended the job (and counted the
# request) before the worker knew them. Once per job, whoever sends them. KEYS: the job. ARGV: prompt, completion.
_CANCELLED_TOKENS = LUA + """
local found = redis.call('HMGET', KEYS[1], 'status', 'kind', 'owner', 'model')
if found[1] ~= 'cancelled' or found[2] ~= 'generation' then return 0 end
if redis.call('HSETNX', KEYS[1], 'usage_after_cancel', 1) == 0 then return 0 end
local model = (found[4] or 'unknown') .. ':'
add_usage(usage_owner(found[3]), {model .. 'prompt_tokens', tonumber(ARGV[1]), model .. 'completion_tokens',
                                  tonumber(ARGV[2])})
return 1
"""

# A key's jobs in flight. Ids whose record is gone (expired without ever ending) or has ended are dropped first,
# when the count would refuse a job: the answer is exact. KEYS: the key's in-flight set. ARGV: the limit.
_IN_FLIGHT = """
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[1]) then return n end
for _, job in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local status = redis.call('HGET', """ + lua_key(JOB_KEY, "job") + """, 'status')
  if not status or status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    redis.call('ZREM', KEYS[1], job)
  end
end
return redis.call('ZCARD', KEYS[1])
"""


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def seconds_to_utc_midnight(now: float | None = None) -> int:
    now = time.time() if now is None else now
    return int(86_400 - now % 86_400) or 1


def split_field(field: str) -> tuple[str | None, str]:
    """A day hash's field → (model, counter); model None for a key's OCR counters."""
    if field in OWNER_FIELDS:
        return None, field
    model, _, counter = field.rpartition(":")
    return model, counter


def count_cancelled_tokens(client: redis.Redis, job_id: str, prompt_tokens: int, completion_tokens: int) -> bool:
    """Add what a cancelled generation used while it ran (once per job); False when counted already or not
    cancelled."""
    script = client.register_script(_CANCELLED_TOKENS)
    return bool(script(keys=[JOB_KEY.format(job_id)], args=[prompt_tokens, completion_tokens]))


class UsageStore:
    """Reads the usage counters and a key's jobs in flight."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._in_flight = client.register_script(_IN_FLIGHT)

    def days(self, start: date, end: date, owner: str | None = None) -> dict[tuple[date, str], dict[str, int]]:
        """(day, owner) → its counters, for each day from `start` to `end` with usage; every owner's when `owner`
        is None. Two round trips whatever the range."""
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        if owner is None:
            with self.redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.smembers(USAGE_OWNERS_KEY.format(day.isoformat()))
                pairs = [(day, who) for day, owners in zip(days, pipe.execute(), strict=True) for who in sorted(owners)]
        else:
            pairs = [(day, owner) for day in days]
        with self.redis.pipeline(transaction=False) as pipe:
            for day, who in pairs:
                pipe.hgetall(USAGE_DAY_KEY.format(day.isoformat(), who))
            hashes = pipe.execute()
        return {pair: {field: int(n) for field, n in raw.items()}
                for pair, raw in zip(pairs, hashes, strict=True) if raw}

    def tokens_on(self, day: date, owner: str) -> int:
        """Prompt plus completion tokens of `owner` on `day`, all models together."""
        raw = self.redis.hgetall(USAGE_DAY_KEY.format(day.isoformat(), owner))
        return sum(int(n) for field, n in raw.items()
                   if split_field(field)[1] in ("prompt_tokens", "completion_tokens"))

    def in_flight(self, owner: str, limit: int) -> int:
        """Jobs of `owner` queued or running; exact whenever the answer is `limit` or more."""
        return int(self._in_flight(keys=[IN_FLIGHT_KEY.format(owner)], args=[limit]))

    def totals(self) -> dict[str, dict[str, int]]:
        """owner → field → the count since the start (fields as in a day's hash)."""
        out: dict[str, dict[str, int]] = {}
        for field, n in self.redis.hgetall(USAGE_TOTALS_KEY).items():
            owner, _, rest = field.partition(":")
            out.setdefault(owner, {})[rest] = int(n)
        return out
