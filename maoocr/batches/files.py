"""Batch API files in Redis: an uploaded input file kept as its lines, and a batch's output and error files, which
are views of the answers the batch collected (made when it ends, they cost no copy)."""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import redis

from maoocr.batches.lines import split_upload
from maoocr.config import BatchSettings
from maoocr.errors import FileNotFound
from maoocr.protocol.batches import FileDeleted, FileObject
from maoocr.store.keys import BATCH_ERRORS_KEY, BATCH_OUTPUT_KEY, FILE_KEY, FILE_LINES_KEY

_PARTS = {"output": BATCH_OUTPUT_KEY, "error": BATCH_ERRORS_KEY}
_PUSH_AT_ONCE = 1000  # lines per RPUSH: a large file goes in without one huge command
_READ_AT_ONCE = 1000


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


def part_file_id(batch_id: str, part: str) -> str:
    """The id of a batch's output or error file: one per batch, so making it twice makes the same file."""
    return f"file-{batch_id.removeprefix('batch_')}-{part}"


class FileStore:
    def __init__(self, client: redis.Redis, settings: BatchSettings) -> None:
        self.redis = client
        self.settings = settings

    def upload(self, content: bytes, filename: str, owner: str | None) -> FileObject:
        """Keep a batch input file (checked against the limits first) and answer its file object."""
        lines = split_upload(content, self.settings)
        now = int(time.time())
        record = FileObject(id=new_file_id(), bytes=sum(len(line.encode("utf-8")) + 1 for line in lines),
                            created_at=now, filename=filename, purpose="batch",
                            expires_at=now + self.settings.file_ttl_s)
        lines_key, ttl = FILE_LINES_KEY.format(record.id), self.settings.file_ttl_s
        # The record last, in one transaction with the lines: a file either exists with all its lines or not at all.
        with self.redis.pipeline(transaction=True) as pipe:
            for start in range(0, len(lines), _PUSH_AT_ONCE):
                pipe.rpush(lines_key, *lines[start:start + _PUSH_AT_ONCE])
            pipe.expire(lines_key, ttl)
            pipe.hset(FILE_KEY.format(record.id), mapping=file_fields(record, owner))
            pipe.expire(FILE_KEY.format(record.id), ttl)
            pipe.execute()
        return record

    def get(self, file_id: str, owner: str | None) -> FileObject:
        return FileObject.model_validate(self._raw(file_id, owner))

    def content(self, file_id: str, owner: str | None) -> Iterator[str]:
        """The file's content, in pieces; checked now (a missing file raises here, not mid-answer)."""
        raw = self._raw(file_id, owner)
        if raw.get("batch_id"):
            return self._answers(_PARTS[raw["part"]].format(raw["batch_id"]))
        return self._lines(FILE_LINES_KEY.format(file_id))

    def delete(self, file_id: str, owner: str | None) -> FileDeleted:
        self._raw(file_id, owner)
        # A batch's answers stay with the batch: deleting its output file removes the file object only.
        self.redis.delete(FILE_KEY.format(file_id), FILE_LINES_KEY.format(file_id))
        return FileDeleted(id=file_id)

    def _raw(self, file_id: str, owner: str | None) -> dict[str, str]:
        raw = self.redis.hgetall(FILE_KEY.format(file_id))
        # Another key's file looks exactly like no file, as jobs do.
        if not raw or (owner is not None and raw.get("owner") != owner):
            raise FileNotFound(f"file {file_id!r} not found (it may have expired or been deleted)")
        return raw

    def _lines(self, key: str) -> Iterator[str]:
        start = 0
        while True:
            chunk = self.redis.lrange(key, start, start + _READ_AT_ONCE - 1)
            if not chunk:
                return
            yield "".join(line + "\n" for line in chunk)
            start += len(chunk)

    def _answers(self, key: str) -> Iterator[str]:
        # In input order: the answers are keyed by line index.
        answers = self.redis.hgetall(key)
        ordered = sorted(answers.items(), key=lambda item: int(item[0]))
        for start in range(0, len(ordered), _READ_AT_ONCE):
            yield "".join(line + "\n" for _, line in ordered[start:start + _READ_AT_ONCE])


def file_fields(record: FileObject, owner: str | None) -> dict[str, str]:
    """A file object and its owner as the fields of its Redis hash."""
    fields = {key: str(value) for key, value in record.model_dump(exclude_none=True).items()}
    if owner is not None:
        fields["owner"] = owner
    return fields
