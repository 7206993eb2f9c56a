"""Where `maoocr up` tells the other commands which Redis and API it started: `<data_dir>/up.json`.

Commands run beside it (`submit`, `status`, `stream`, `ingest`, `worker`, `flower`, and Celery's own
`celery -A workers.celery_app …`) use these URLs unless MAOOCR_REDIS_URL / MAOOCR_API_URL name others. The
record names the `up` process and counts only while that process lives, so one left by a killed `up` is ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from maoocr.errors import ConfigError

RECORD_NAME = "up.json"


class UpRecord(BaseModel):
    pid: int
    redis_url: str
    api_url: str


def record_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir).resolve() / RECORD_NAME


def write_record(data_dir: str | os.PathLike[str], record: UpRecord) -> Path:
    """Written whole or not at all (readers never see half a file); owner-only, as the Redis URL may hold a password."""
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(record.model_dump_json())
    os.replace(partial, path)
    return path


def remove_record(data_dir: str | os.PathLike[str], pid: int) -> None:
    """Removes the record if `pid` wrote it (a second `up` refused at start must not remove the first one's)."""
    record = read_record(data_dir)
    if record is not None and record.pid == pid:
        record_path(data_dir).unlink(missing_ok=True)


def read_record(data_dir: str | os.PathLike[str]) -> UpRecord | None:
    try:
        return UpRecord.model_validate_json(record_path(data_dir).read_bytes())
    except (OSError, ValidationError):
        return None


def running_up(data_dir: str | os.PathLike[str]) -> UpRecord | None:
    """The record of an `up` that is still running, if any."""
    record = read_record(data_dir)
    return record if record is not None and pid_alive(record.pid) else None


def use_running_up(env: dict[str, str] | os._Environ = os.environ) -> UpRecord | None:
    """Points `env` at the Redis and API of an `up` running with this configuration's data dir, for each URL
    `env` does not set already; returns the record used (None: no `up` runs here, or the config does not load)."""
    from maoocr.config import load_settings

    try:
        data_dir = load_settings(env=dict(env)).data_dir
    except ConfigError:
        return None  # the command itself reports the configuration's problem
    record = running_up(data_dir)
    if record is not None:
        env.setdefault("MAOOCR_REDIS_URL", record.redis_url)
        env.setdefault("MAOOCR_API_URL", record.api_url)
    return record


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return True  # no /proc: kill(0) said it exists
