"""Which webhook URLs may be called. A webhook makes MaoOCR send a request wherever a caller says; without a check
that would let any API user reach services inside the network (cloud metadata, admin ports). Checked when a job is
accepted and again before each delivery (a name can resolve elsewhere by then)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from maoocr.config import WebhookSettings
from maoocr.errors import InvalidRequest

MAX_URL_CHARS = 2048


def check_webhook_url(url: str, allow_private: bool = False) -> None:
    """Raises InvalidRequest saying why `url` may not be called."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidRequest(f"webhook_url is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"webhook_url must be an http:// or https:// URL with a host, not {url[:100]!r}")
    if parts.username or parts.password:
        raise InvalidRequest("webhook_url must not carry credentials; receivers check X-MaoOCR-Signature")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)}
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"webhook_url's host {parts.hostname!r} does not resolve: {exc}") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global:
            raise InvalidRequest(f"webhook_url's host {parts.hostname!r} is {ip}, a loopback, private or other "
                                 "non-public address; the server's webhooks.allow_private permits such targets")


def webhook_for_job(settings: WebhookSettings, requested: str | None, owner: str | None) -> str | None:
    """The webhook a new job gets: the one it names, else its API key's default; refused (InvalidRequest) when
    webhooks are off or the target may not be called."""
    url = requested or (settings.key_defaults.get(owner) if owner else None)
    if not url:
        return None
    if not settings.secret:
        raise InvalidRequest("webhooks are off on this server: it has no webhooks.secret to sign them with")
    check_webhook_url(url, settings.allow_private)
    return url
