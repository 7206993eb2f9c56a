"""Bearer API keys on every endpoint but health and the API description; the caller's key id owns its jobs."""

from __future__ import annotations

from flask import Flask, current_app, g, request

from api.errors import error_response
from maoocr.auth import ApiKeys, bearer_token

# Probes and the API's own description stay open: load balancers and client generators carry no key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})


def init_auth(app: Flask, keys: ApiKeys, admins: frozenset[str] = frozenset()) -> None:
    """Require a valid key on every request when keys are configured; with none, auth is off (owner None).
    `admins`: the key ids of the admin keys (they are in `keys` too)."""
    app.extensions["maoocr.auth"] = keys
    app.extensions["maoocr.auth.admins"] = admins
    if not keys.enabled:
        return

    @app.before_request
    def _require_key():
        if request.path in OPEN_PATHS:
            return None
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return _unauthorized("missing_api_key", "this endpoint needs an API key: "
                                 "send the header 'Authorization: Bearer <key>'", error=None)
        owner = keys.owner_of(token)
        if owner is None:
            return _unauthorized("invalid_api_key", "the API key is not valid", error="invalid_token")
        g.maoocr_owner = owner
        return None


def current_owner() -> str | None:
    """The key id of this request's caller; None when auth is off (jobs then belong to nobody in particular)."""
    return g.get("maoocr_owner")


def is_admin() -> bool:
    """Whether this request's caller holds an admin key; with auth off, everyone does (there is no key to guard)."""
    if not current_app.extensions["maoocr.auth"].enabled:
        return True
    return current_owner() in current_app.extensions["maoocr.auth.admins"]


def _unauthorized(code: str, message: str, error: str | None):
    response = error_response(code, message, 401)
    # RFC 6750: the scheme, and for a key that was sent but is wrong, why it was refused.
    challenge = 'Bearer realm="maoocr"' + (f', error="{error}"' if error else "")
    response.headers["WWW-Authenticate"] = challenge
    return response
