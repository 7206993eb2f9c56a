"""What every ingest source is made of: the caps, entries and their refusals, member-name checks, and the
Source base class that plans a source's entries under those caps. The kinds of source live in archive.py.
"""

from __future__ import annotations

import lzma
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field

MiB = 1024 * 1024
_READ_CHUNK = MiB
_DRIVE = re.compile(r"^[A-Za-z]:")
# Shared with the tar source, whose header scan meets the same failures as reading an entry.
ERRORS_WHILE_READING = (OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError, zipfile.BadZipFile,
                        NotImplementedError, RuntimeError, ValueError)



class IngestLimits(BaseModel):
    """Caps applied while reading a source. Defaults fit scanned documents: the API itself takes 50 MiB files."""

    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(10_000, gt=0, description="Entries (files, folders, links) read from one source.")
    max_entry_bytes: int = Field(50 * MiB, gt=0, description="Largest single file, uncompressed.")
    max_total_bytes: int = Field(4096 * MiB, gt=0, description="Sum of all files' uncompressed sizes.")
    max_ratio: float = Field(100.0, gt=1, description="Highest uncompressed/compressed size of one entry.")
    ratio_min_bytes: int = Field(
        MiB, ge=0, description="Entries smaller than this skip the ratio check: small files compress wildly "
                               "and cost nothing.")


class Refused(Exception):
    """An entry that is not read, with the reason that goes into its output line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Entry:
    """One file of a source: its name inside the source, and either a refusal or a way to read its bytes."""

    name: str
    size: int = 0
    refusal: str | None = None
    _reader: Callable[[], bytes] | None = None

    def read(self) -> bytes:
        """The entry's bytes; raises Refused for a refused entry or one that breaks a cap while being read."""
        if self.refusal is not None or self._reader is None:
            raise Refused(self.refusal or "nothing to read")
        try:
            return self._reader()
        except Refused:
            raise
        except ERRORS_WHILE_READING as exc:
            raise Refused(f"unreadable entry: {type(exc).__name__}: {exc}") from exc


class SourceError(Exception):
    """The source as a whole cannot be opened (missing path, corrupt archive header)."""


def unsafe_name(name: str) -> str | None:
    """Why an archive member name is unsafe (absolute, drive letter, '..'), or None when it is fine."""
    if not name or "\x00" in name:
        return "empty name or NUL byte in the name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    # Backslashes count as separators too: a Windows tool would read '..\\x' as a traversal.
    if ".." in re.split(r"[/\\]", name):
        return "path traversal ('..' component)"
    return None


def clean_name(name: str) -> str:
    """'./a//b.png' → 'a/b.png', so one file has one name (the resume key)."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def read_capped(stream: BinaryIO, cap: int) -> bytes:
    """Read to the end, counting bytes, but stop and refuse once more than `cap` bytes came out."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise Refused(f"entry is larger than the {cap}-byte limit (stopped reading at {total} bytes)")
        chunks.append(chunk)


class _Plan:
    """Builds a source's list of entries and enforces the entry-count and total-size caps along the way."""

    def __init__(self, limits: IngestLimits) -> None:
        self.limits = limits
        self.entries: list[Entry] = []
        self.seen_entries = 0
        self.total_bytes = 0
        self.names: set[str] = set()

    def count(self, name: str) -> bool:
        """Count one entry (any kind); False, after adding the stop line, once the source has too many."""
        self.seen_entries += 1
        if self.seen_entries > self.limits.max_entries:
            self.stop(name, f"the source has more than {self.limits.max_entries} entries; "
                            "this and later entries were not read")
            return False
        return True

    def refuse(self, name: str, reason: str) -> None:
        self.entries.append(Entry(name, refusal=reason))

    stop = refuse  # the same line; the caller then stops listing

    def add(self, raw_name: str, size: int, reader: Callable[[], bytes], *, check_name: bool = True) -> bool:
        """Add a regular file after the name, duplicate, size and total checks; False when the source stops."""
        if check_name and (why := unsafe_name(raw_name)):
            self.refuse(raw_name, why)
            return True
        name = clean_name(raw_name) if check_name else raw_name
        if name in self.names:
            self.refuse(raw_name, "duplicate name: an earlier entry has the same path")
            return True
        self.names.add(name)
        if size > self.limits.max_entry_bytes:
            self.refuse(name, f"entry is {size} bytes; the limit is {self.limits.max_entry_bytes} bytes")
            return True
        self.total_bytes += size
        if self.total_bytes > self.limits.max_total_bytes:
            self.stop(name, f"the source expands to more than {self.limits.max_total_bytes} bytes; "
                            "this and later entries were not read")
            return False
        self.entries.append(Entry(name, size, _reader=reader))
        return True


class Source:
    """A planned source: `total` entries to expect, `entries()` in a stable order. Use as a context manager."""

    kind = "source"

    def __init__(self, path: Path, limits: IngestLimits) -> None:
        self.path = path
        self.limits = limits
        self._plan = _Plan(limits)
        self._closers: list[Callable[[], None]] = []

    @property
    def total(self) -> int:
        return len(self._plan.entries)

    def entries(self) -> Iterator[Entry]:
        """Entries in source order. Read each entry before advancing: tar streams only move forward cheaply."""
        yield from self._plan.entries

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
