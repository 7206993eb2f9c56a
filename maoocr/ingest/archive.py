"""The kinds of ingest source (zip, tar of any compression, directory tree or one file), read entry by entry,
and open_source, which recognises a path's kind.

Nothing is extracted to disk: entries are read into memory under size, count and compression-ratio caps.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

from maoocr.ingest.source import (ERRORS_WHILE_READING, MiB, Entry, IngestLimits, Refused, Source, SourceError,
                                  clean_name, read_capped, unsafe_name)

# Re-exported: callers import these from here.
__all__ = ["DirectorySource", "Entry", "FileSource", "IngestLimits", "MiB", "Refused", "Source", "SourceError",
           "TarSource", "ZipSource", "clean_name", "open_source", "read_capped", "unsafe_name"]

# Compressed tar layers are fed to their decompressor in small pieces so that the compressed bytes an entry
# consumed can be measured to within a few KiB (for the ratio check).
_SMALL_READ = 4096
# How far a decompressor's input may run ahead of its output, added to the measured compressed size so the
# ratio is not over-stated: one small read for gzip/xz (streaming). bzip2 decodes whole blocks, so it may run
# up to a block ahead; a very compressible (>~50:1) bzip2 entry of a few MiB can be refused (raise max_ratio).
_SLACK = 16 * 1024


class ZipSource(Source):
    kind = "zip"

    def __init__(self, path: Path, limits: IngestLimits) -> None:
        super().__init__(path, limits)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise SourceError(f"{path}: not a readable zip: {exc}") from exc
        self._closers.append(self._zip.close)
        for info in self._zip.infolist():
            if not self._plan.count(info.filename):
                break
            if info.is_dir():
                continue
            why = self._refusal(info)
            if why:
                self._plan.refuse(info.filename, why)
            elif not self._plan.add(info.filename, info.file_size, self._reader(info)):
                break

    def _refusal(self, info: zipfile.ZipInfo) -> str | None:
        # Unix tools keep the file mode in the high 16 bits of external_attr; 0 means "no mode recorded".
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            return "symlink entry"
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            return "not a regular file (device, fifo or socket)"
        if info.flag_bits & 0x1:
            return "encrypted entry"
        lim = self.limits
        if info.file_size >= lim.ratio_min_bytes and info.file_size > lim.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            return (f"compression ratio {ratio:.0f}:1 is over the {lim.max_ratio:.0f}:1 limit "
                    f"({info.file_size} bytes from {info.compress_size})")
        return None

    def _reader(self, info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            # zipfile stops at the declared size and checks the CRC; counting here is a second, independent cap.
            with self._zip.open(info) as stream:
                data = read_capped(stream, min(self.limits.max_entry_bytes, info.file_size))
            return data
        return read


class _SmallReads:
    """A file wrapper that returns at most _SMALL_READ bytes per read, so tell() tracks what was consumed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.seek, self.tell = raw.seek, raw.tell

    def read(self, size: int = -1) -> bytes:
        return self.raw.read(_SMALL_READ if size is None or size < 0 else min(size, _SMALL_READ))

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        pass  # the raw file is closed by the source


_MAGIC = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}


def _compression(head: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


class TarSource(Source):
    kind = "tar"

    def __init__(self, path: Path, limits: IngestLimits) -> None:
        super().__init__(path, limits)
        raw = open(path, "rb")  # noqa: SIM115 — closed with the source
        self._closers.append(raw.close)
        self._raw = raw
        self.compression = _compression(raw.read(6))
        raw.seek(0)
        # The decompressor is ours, not tarfile's, so that compressed bytes per entry can be counted.
        opener = {"gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}
        stream: BinaryIO = opener[self.compression](_SmallReads(raw)) if self.compression else raw
        self._closers.append(stream.close)
        try:
            self._tar = tarfile.open(fileobj=stream, mode="r:")
        except ERRORS_WHILE_READING as exc:
            self.close()
            raise SourceError(f"{path}: not a readable tar: {exc}") from exc
        self._closers.append(self._tar.close)
        self._stream = stream
        self._scan()

    def _scan(self) -> None:
        # Headers only: next() returns right after a header, so a member's data is never decompressed here
        # unless a later header follows it (and then its size already counted against the total).
        while True:
            try:
                member = self._tar.next()
            except ERRORS_WHILE_READING as exc:
                self._plan.stop(f"{self.path.name}:entry-{self._plan.seen_entries + 1}",
                                f"the archive is corrupt here ({type(exc).__name__}: {exc}); later entries "
                                "were not read")
                return
            if member is None or not self._plan.count(member.name):
                return
            why = self._refusal(member)
            if why:
                self._plan.refuse(member.name, why)
            elif member.isreg():
                if not self._plan.add(member.name, member.size, self._reader(member)):
                    return

    @staticmethod
    def _refusal(member: tarfile.TarInfo) -> str | None:
        if member.issym():
            return f"symlink entry (to {member.linkname!r})"
        if member.islnk():
            return f"hard link entry (to {member.linkname!r})"
        if member.ischr() or member.isblk():
            return "device entry"
        if member.isfifo():
            return "fifo entry"
        if not member.isreg() and not member.isdir():
            return f"unsupported entry type {member.type!r}"
        return None

    def _reader(self, member: tarfile.TarInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            self._stream.seek(member.offset_data)
            before = self._raw.tell()
            extracted = self._tar.extractfile(member)
            assert extracted is not None  # regular members always have data
            data = read_capped(extracted, min(self.limits.max_entry_bytes, member.size))
            if self.compression:
                self._check_ratio(len(data), self._raw.tell() - before + _SLACK)
            return data
        return read

    def _check_ratio(self, size: int, compressed: int) -> None:
        lim = self.limits
        if size >= lim.ratio_min_bytes and size > lim.max_ratio * compressed:
            raise Refused(f"compression ratio {size / compressed:.0f}:1 or more is over the "
                          f"{lim.max_ratio:.0f}:1 limit ({size} bytes from at most {compressed})")


class DirectorySource(Source):
    kind = "directory"

    def __init__(self, path: Path, limits: IngestLimits) -> None:
        super().__init__(path, limits)
        self._root = os.path.realpath(path)
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(self._root, onerror=errors.append):
            dirnames.sort()
            for name in dirnames + sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = Path(os.path.relpath(full, self._root)).as_posix()
                if name in dirnames and not os.path.islink(full):
                    continue  # a real folder: walked into
                if not self._plan.count(rel) or not self._visit(full, rel):
                    return
            for exc in errors:
                where = Path(os.path.relpath(exc.filename or self._root, self._root)).as_posix()
                self._plan.refuse(where, f"cannot list folder: {exc.strerror or exc}")
            errors.clear()

    def _visit(self, full: str, rel: str) -> bool:
        try:
            st = os.lstat(full)
            target = full
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(full)
                if os.path.commonpath([self._root, target]) != self._root:
                    self._plan.refuse(rel, "symlink points outside the source folder")
                    return True
                st = os.stat(target)
                if stat.S_ISDIR(st.st_mode):
                    self._plan.refuse(rel, "symlink to a folder is not followed")
                    return True
        except OSError as exc:
            self._plan.refuse(rel, f"cannot stat: {exc.strerror or exc}")
            return True
        if not stat.S_ISREG(st.st_mode):
            self._plan.refuse(rel, "not a regular file (device, fifo or socket)")
            return True
        return self._plan.add(rel, st.st_size, self._reader(target), check_name=False)

    def _reader(self, target: str) -> Callable[[], bytes]:
        def read() -> bytes:
            # O_NOFOLLOW + O_NONBLOCK: a file swapped for a link or a fifo since the scan fails instead of
            # escaping the root or blocking the run.
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as stream:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise Refused("not a regular file (changed since the scan)")
                return read_capped(stream, self.limits.max_entry_bytes)
        return read


class FileSource(Source):
    """A single document: a source with one entry, so `ingest scan.pdf` works like a one-file folder."""

    kind = "file"

    def __init__(self, path: Path, limits: IngestLimits) -> None:
        super().__init__(path, limits)
        self._plan.count(path.name)
        size = path.stat().st_size
        self._plan.add(path.name, size, self._read, check_name=False)

    def _read(self) -> bytes:
        with self.path.open("rb") as stream:
            return read_capped(stream, self.limits.max_entry_bytes)


def open_source(path: str | os.PathLike[str], limits: IngestLimits | None = None) -> Source:
    """Recognise the source by content (zip, tar with any compression), else a folder or a single file."""
    path = Path(path)
    limits = limits or IngestLimits()
    if path.is_dir():
        return DirectorySource(path, limits)
    if not path.is_file():
        raise SourceError(f"{path}: no such file or folder")
    with path.open("rb") as f:
        head = f.read(512)
    # A tar whose last member is a zip can pass is_zipfile (it looks for the zip trailer near the end), so
    # compressed or ustar-marked content is tried as a tar first.
    tar_first = _compression(head) is not None or head[257:262] == b"ustar"
    if tar_first and tarfile.is_tarfile(path):
        return TarSource(path, limits)
    if zipfile.is_zipfile(path):
        return ZipSource(path, limits)
    if tarfile.is_tarfile(path):
        return TarSource(path, limits)
    return FileSource(path, limits)
