"""API keys: parsed once, kept only as sha256 digests, checked in constant time; a key's id owns its jobs.

A key is written either plainly or as `sha256:<hex>` (its digest), so config files need never hold a real key.
The owner id stored on jobs is a prefix of the digest: it names the key without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Iterable

from maoocr.errors import ConfigError

HASH_PREFIX = "sha256:"
OWNER_ID_CHARS = 16


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def owner_id(key_digest: str) -> str:
    return key_digest[:OWNER_ID_CHARS]


def _parse(entry: str) -> str:
    """One configured key → its hex digest."""
    entry = entry.strip()
    if entry.lower().startswith(HASH_PREFIX):
        hexdigest = entry[len(HASH_PREFIX):].strip().lower()
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ConfigError(f"API key {entry[:len(HASH_PREFIX) + 8]}…: a sha256: entry needs 64 hex digits")
        return hexdigest
    return digest(entry)


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys as digests. Empty means authentication is off."""

    digests: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> "ApiKeys":
        found: list[str] = []
        for entry in entries:
            if entry.strip():
                hexdigest = _parse(entry)
                if hexdigest not in found:
                    found.append(hexdigest)
        return cls(tuple(found))

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def owner_of(self, key: str) -> str | None:
        """The owner id of a presented key, or None if it is not one of ours.

        Every configured digest is compared, with compare_digest, so the time taken says nothing about
        which key (or how much of one) matched.
        """
        presented = digest(key)
        match = None
        for known in self.digests:
            if hmac.compare_digest(presented, known):
                match = known
        return owner_id(match) if match is not None else None


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server private to this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
