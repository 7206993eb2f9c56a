"""Checks a generation request against the configuration before it is queued (the worker checks token counts)."""

from __future__ import annotations

from maoocr.config import Settings
from maoocr.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound
from maoocr.protocol.generation import GenerationParams


def validate_params(params: GenerationParams, settings: Settings) -> None:
    assert settings.models is not None
    if params.model not in settings.models.models:
        known = ", ".join(sorted(settings.models.models))
        raise ModelNotFound(f"model {params.model!r} does not exist (available: {known})")
    model = settings.model(params.model)
    if params.max_tokens >= model.max_model_len:
        raise ContextLengthExceeded(f"max_tokens {params.max_tokens} leaves no room for the prompt in model "
                                    f"{params.model!r}, whose context is {model.max_model_len} tokens")
    if params.max_tokens > settings.limits.max_tokens:
        raise InvalidRequest(f"max_tokens {params.max_tokens} is above this server's limit of "
                             f"{settings.limits.max_tokens}")
    if params.n > settings.limits.max_n:
        raise InvalidRequest(f"n {params.n} is above this server's limit of {settings.limits.max_n}")
    chars = len(params.prompt or "") + sum(len(m.text()) for m in params.messages or [])
    if chars > settings.limits.max_prompt_chars:
        raise InvalidRequest(f"prompt of {chars} characters is above the limit of {settings.limits.max_prompt_chars}")
