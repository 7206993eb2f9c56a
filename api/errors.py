"""Every error answers JSON `{"error": {"code", "message"}}` with the right status; Redis down is a 503."""

from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from maoocr.errors import MaoOCRError, QuotaExceeded

log = logging.getLogger("maoocr.api")


def error_response(code: str, message: str, status: int):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(MaoOCRError)
    def _maoocr(exc: MaoOCRError):
        response = error_response(exc.code, exc.message, exc.http_status)
        if isinstance(exc, QuotaExceeded):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        return error_response("invalid_request", describe_validation_error(exc), 400)

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _redis_down(exc: Exception):
        log.warning("redis unavailable: %s", exc)
        response = error_response("service_unavailable", "the job store (Redis) is unavailable; retry shortly", 503)
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(TimeoutError)
    def _timeout(exc: TimeoutError):
        return error_response("timeout", str(exc) or "timed out waiting for the job", 504)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(code, exc.description or exc.name, exc.code or 500)
