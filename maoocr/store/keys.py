"""Every Redis key and channel MaoOCR uses. The Redis layout:

Job records (`maoocr.store.jobs`), one per job, all with the job's TTL (`ttls.job_s`):
  maoocr:job:<id>               hash    the record: status, kind, model, owner, worker, attempts, progress, result,
                                        error, timestamps, the ids of the last claim and move (resends), and
                                        for a Batch API line its batch_id
  maoocr:job:<id>:done          channel its final status, published once, in the step that writes it
  maoocr:job:<id>:pages_done    set     OCR: indexes of the pages finished (a page run twice counts once)
  maoocr:job:<id>:split         string  OCR: the pages were fanned out (a split delivered again does nothing)
  maoocr:doc:<id>               string  OCR: the uploaded document's bytes, read by whichever worker runs a page
  maoocr:stats:jobs             hash    "<kind>:<status>" → jobs in that state now or ended so far (/metrics)
  maoocr:control:cancel         channel a job id to cancel: the worker running it aborts it

Webhooks (`maoocr.webhooks`):
  maoocr:webhooks:due           zset    job ids whose webhook is to be sent, scored by when the next attempt is due
                                        (added in the step that ends the job; a sender leases one by moving its score)

Batch API (`maoocr.batches`): files expire after `batches.file_ttl_s`; a batch's keys expire together, its
completion window plus `batches.ttl_s` after it was made, then `batches.ttl_s` after it ended:
  maoocr:file:<id>              hash    a file object (id, bytes, created_at, filename, purpose, expires_at) and its
                                        owner; a batch's output or error file also names its batch and part
  maoocr:file:<id>:lines        list    an uploaded file's lines, in order (its content is their join)
  maoocr:batch:<id>             hash    the batch object, its owner, and its progress: cursor (lines queued so
                                        far), answered, end (cancelled or expired, once asked)
  maoocr:batch:<id>:lines       list    a copy of the input file's lines, made with the batch (the file may go)
  maoocr:batch:<id>:custom_ids  hash    custom_id → the index of the line that holds it first
  maoocr:batch:<id>:output      hash    line index → that line's output line (succeeded requests)
  maoocr:batch:<id>:errors      hash    line index → that line's error line (everything else)
  maoocr:batches:owner:<owner>  zset    an API key's batch ids by creation time ('' when auth is off)
  maoocr:batches:active         zset    batch ids not yet ended, scored by when a batch runner is next due on it
  maoocr:batches:due            zset    ids of line jobs that ended and wait to be collected (added in the step
                                        that ends the job; a runner leases one by moving its score)

Job streams (`maoocr.store.streams`), with the stream TTL (`ttls.stream_s`):
  maoocr:stream:<id>            channel each chunk as it is appended (live followers)
  maoocr:stream:<id>:replay     list    every chunk in seq order (late followers replay it first)
  maoocr:stream:<id>:batches    set     ids of the writes appended already (a resent write is not appended twice)

Usage per API key (`maoocr.store.usage`), counted in the step that ends a job; owner `anonymous` when auth is off:
  maoocr:usage:<day>:<owner>    hash    one UTC day (YYYY-MM-DD) of a key: "<model>:prompt_tokens",
                                        "<model>:completion_tokens", "<model>:requests", "documents", "pages";
                                        expires USAGE_TTL_S after the day's last count
  maoocr:usage:owners:<day>     set     the owners with usage that day (same expiry)
  maoocr:usage:totals           hash    "<owner>:<field>" → the same counters since the start, never expiring (/metrics)
  maoocr:inflight:<owner>       zset    an API key's job ids queued or running, scored by creation time (added with
                                        the record, removed in the step that ends it)

Workers (`maoocr.store.heartbeats`):
  maoocr:worker:<name>          string  JSON: who it is, its instance token, what it serves; expires with the
                                        heartbeat TTL, so a claim held by a dead worker can be taken over

Celery's own keys share the database: one list per queue (`queues.llm_prefix`.<model>, `queues.ocr`) holding task
messages (`maoocr.tasks`), kombu's `unacked` hash and `unacked_index` sorted set, and the result backend's
`celery-task-meta-<id>` keys that carry OCR page results into their chord.
"""

from __future__ import annotations

JOB_KEY = "maoocr:job:{}"
DONE_CHANNEL = JOB_KEY + ":done"  # the transition script publishes on KEYS[1] .. ':done'
DONE_PATTERN = DONE_CHANNEL.format("*")
PAGES_DONE_KEY = "maoocr:job:{}:pages_done"
SPLIT_KEY = "maoocr:job:{}:split"
DOC_KEY = "maoocr:doc:{}"
JOB_STATS_KEY = "maoocr:stats:jobs"
CANCEL_CHANNEL = "maoocr:control:cancel"
WEBHOOKS_DUE_KEY = "maoocr:webhooks:due"

FILE_KEY = "maoocr:file:{}"
FILE_LINES_KEY = "maoocr:file:{}:lines"
BATCH_KEY = "maoocr:batch:{}"
BATCH_LINES_KEY = "maoocr:batch:{}:lines"
BATCH_CUSTOM_IDS_KEY = "maoocr:batch:{}:custom_ids"
BATCH_OUTPUT_KEY = "maoocr:batch:{}:output"
BATCH_ERRORS_KEY = "maoocr:batch:{}:errors"
BATCHES_OWNER_KEY = "maoocr:batches:owner:{}"
BATCHES_ACTIVE_KEY = "maoocr:batches:active"
BATCHES_DUE_KEY = "maoocr:batches:due"

STREAM_CHANNEL = "maoocr:stream:{}"
REPLAY_KEY = "maoocr:stream:{}:replay"
BATCHES_KEY = "maoocr:stream:{}:batches"

USAGE_DAY_KEY = "maoocr:usage:{}:{}"  # day, owner
USAGE_OWNERS_KEY = "maoocr:usage:owners:{}"  # day
USAGE_TOTALS_KEY = "maoocr:usage:totals"
IN_FLIGHT_KEY = "maoocr:inflight:{}"  # owner
USAGE_TTL_S = 400 * 86_400

WORKER_KEY = "maoocr:worker:{}"


def lua_key(template: str, variable: str) -> str:
    """A Lua expression for `template` filled with the Lua variable `variable`, for the store's scripts:
    lua_key(JOB_KEY, "job") is `'maoocr:job:' .. job`."""
    before, after = template.split("{}")
    return f"'{before}' .. {variable}" + (f" .. '{after}'" if after else "")
