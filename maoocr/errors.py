"""One error family for the whole library: each error has a stable `code` the API maps to an HTTP status."""

from __future__ import annotations


class MaoOCRError(Exception):
    """Base error. `code` is stable and machine-readable; `http_status` is what a transport should answer."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ConfigError(MaoOCRError):
    """A configuration file or environment variable is invalid (raised at start-up)."""

    code = "config_error"


class InvalidRequest(MaoOCRError):
    code = "invalid_request"
    http_status = 400


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ModelNotFound(MaoOCRError):
    code = "model_not_found"
    http_status = 404


class JobNotFound(MaoOCRError):
    code = "job_not_found"
    http_status = 404


class FileNotFound(MaoOCRError):
    code = "file_not_found"
    http_status = 404


class BatchNotFound(MaoOCRError):
    code = "batch_not_found"
    http_status = 404


class PayloadTooLarge(MaoOCRError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(MaoOCRError):
    code = "unsupported_media_type"
    http_status = 415


class UnprocessableDocument(MaoOCRError):
    code = "unprocessable_document"
    http_status = 422


class QuotaExceeded(MaoOCRError):
    """An API key is over one of its quotas; `retry_after_s`: when asking again may succeed."""

    code = "quota_exceeded"
    http_status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(MaoOCRError):
    code = "service_unavailable"
    http_status = 503


class EngineError(MaoOCRError):
    """The inference engine refused or failed a request."""

    code = "engine_error"


def error_from_dict(data: dict) -> MaoOCRError:
    """Rebuild an error stored in a job record so a transport can answer with its original status."""
    code = str(data.get("code", "internal_error"))
    for cls in _ALL:
        if cls.code == code:
            return cls(str(data.get("message", "")))
    return MaoOCRError(str(data.get("message", "")), code=code)


_ALL = (ConfigError, InvalidRequest, ContextLengthExceeded, ModelNotFound, JobNotFound, FileNotFound, BatchNotFound,
        PayloadTooLarge, UnsupportedMediaType, UnprocessableDocument, ServiceUnavailable, EngineError)
