"""`sentinel://` Redis URLs: a Redis whose master Redis Sentinel chooses, and the clients that follow it.

    sentinel://[[user]:password@]host1[:26379][,host2[:26379],...][/db]?master=<name>
               [&sentinel_password=...][&sentinel_username=...]
               [&ssl=true][&ssl_ca_certs=<file>][&ssl_cert_reqs=required|optional|none]
               [&ssl_certfile=<file>][&ssl_keyfile=<file>]

The hosts are Sentinels (port 26379 unless given); the user and password are the Redis master's (as in a
redis:// URL), `sentinel_password` the Sentinels' own when they require one. `ssl=true` speaks TLS to the
Sentinels and to Redis alike. Every MaoOCR client, and Celery's broker and result backend, ask the Sentinels for
the master and ask again after a failover.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from maoocr.errors import ConfigError

SCHEME = "sentinel"
DEFAULT_PORT = 26379
SETTING = "redis_url"  # what a malformed URL's error names (MAOOCR_REDIS_URL sets it too)
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("required", "optional", "none")
_KNOWN = {"master", "sentinel_password", "sentinel_username", "ssl", "ssl_cert_reqs", *_TLS_FILES}
# Sentinel queries are short and many Sentinels may be tried in turn: fail fast on one that does not answer.
_SENTINEL_SOCKETS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "socket_keepalive": True}


@dataclass(frozen=True)
class SentinelTarget:
    """What a `sentinel://` URL names: the Sentinels, the master's name, and how to talk to both."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: dict[str, str] | None = field(default=None)  # None: plain TCP; else redis-py's ssl_* options

    def redis_options(self) -> dict[str, Any]:
        """Connection options for the master (redis-py keywords)."""
        return {"db": self.db, **self._login(self.username, self.password)}

    def sentinel_options(self) -> dict[str, Any]:
        """Connection options for the Sentinels themselves."""
        return {**_SENTINEL_SOCKETS, **self._login(self.sentinel_username, self.sentinel_password)}

    def _login(self, username: str | None, password: str | None) -> dict[str, Any]:
        """The credentials given, and TLS when the URL asks for it (to the Sentinels and the master alike)."""
        options: dict[str, Any] = {}
        if username is not None:
            options["username"] = username
        if password is not None:
            options["password"] = password
        if self.tls is not None:
            options.update(ssl=True, **self.tls)
        return options

    def kombu_url(self) -> str:
        """The same Sentinels as Celery and kombu write them: `sentinel://[:pw@]host:port/db;sentinel://...`."""
        auth = ""
        if self.username is not None or self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        return ";".join(f"sentinel://{auth}{_netloc(host, port)}/{self.db}" for host, port in self.sentinels)

    def celery_transport_options(self) -> dict[str, Any]:
        """`broker_transport_options` / `result_backend_transport_options` entries that find the master."""
        return {"master_name": self.master, "sentinel_kwargs": self.sentinel_options()}

    def celery_tls(self) -> dict[str, Any] | None:
        """`broker_use_ssl` / `redis_backend_use_ssl` for the master connections (None: plain TCP)."""
        if self.tls is None:
            return None
        reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
        return {**self.tls, "ssl_cert_reqs": reqs[self.tls.get("ssl_cert_reqs", "required")]}


def is_sentinel_url(url: str) -> bool:
    return url.split(":", 1)[0].lower() == SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """ConfigError naming `redis_url` for anything malformed; passwords never appear in the message."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise _error(f"not a {SCHEME}:// URL")
    if ";" in url:
        raise _error("separate the Sentinels with commas: sentinel://host1:26379,host2:26379/0?master=mymaster")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if not hosts:
        raise _error("no Sentinel hosts: sentinel://host1:26379,host2:26379/0?master=mymaster")
    sentinels = tuple(_host_port(item) for item in hosts.split(","))
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise _error(f"the database after the hosts must be a number, got {db_text!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _KNOWN)
    if unknown:
        raise _error(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN))})")
    master = query.get("master", "")
    if not master:
        raise _error("name the master Sentinel watches: ...?master=mymaster")
    return SentinelTarget(sentinels=sentinels, master=master, db=int(db_text), username=username,
                          password=password, sentinel_username=query.get("sentinel_username") or None,
                          sentinel_password=query.get("sentinel_password") or None, tls=_tls(query))


def sentinel_pool(target: SentinelTarget, **options: Any) -> redis.ConnectionPool:
    """A blocking pool (as for a plain URL) whose connections go to the master the Sentinels name now; after a
    failover, connections to the old master are dropped and new ones go to the new master."""
    manager = Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_options())
    return _BlockingSentinelPool(target.master, manager, **target.redis_options(), **options)


def async_sentinel_client(target: SentinelTarget, **options: Any):
    """An asyncio client of the master (redis.asyncio.sentinel), for one event loop."""
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    manager = AsyncSentinel(target.sentinels, sentinel_kwargs=target.sentinel_options())
    return manager.master_for(target.master, **target.redis_options(), **options)


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool over its blocking pool: at the connection cap a caller waits rather than fails."""


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise _error(f"empty Sentinel host in {item!r}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _error(f"Sentinel port must be a number from 1 to 65535, got {port_text!r}")
    return host, int(port_text)


def _tls(query: dict[str, str]) -> dict[str, str] | None:
    flag = query.get("ssl", "false").lower()
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise _error(f"ssl must be true or false, got {query['ssl']!r}")
    tls_asked = [key for key in (*_TLS_FILES, "ssl_cert_reqs") if key in query]
    if flag not in ("true", "1", "yes"):
        if tls_asked:
            raise _error(f"{tls_asked[0]} needs ssl=true")
        return None
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise _error(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, got {reqs!r}")
    return {**{key: query[key] for key in _TLS_FILES if key in query}, "ssl_cert_reqs": reqs}


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _error(reason: str) -> ConfigError:
    return ConfigError(f"{SETTING}: malformed sentinel:// URL: {reason}")
