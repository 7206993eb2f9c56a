"""Checks a generation request against the configuration before it is queued (the worker checks token counts)."""

from __future__ import annotations

from maoocr.config import Settings
from maoocr.engines.images import check_image_count, image_limits, image_urls, load_image_url
from maoocr.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound
from maoocr.protocol.generation import GenerationParams


def validate_params(params: GenerationParams, settings: Settings) -> None:
    assert settings.models is not None
    if params.base_model not in settings.models.models:
        known = ", ".join(sorted(settings.models.models))
        raise ModelNotFound(f"model {params.base_model!r} does not exist (available: {known})")
    model = settings.model(params.base_model)
    if params.adapter is not None and params.adapter not in model.lora_adapters:
        served = ", ".join(sorted(model.lora_adapters)) or "none"
        raise ModelNotFound(f"model {params.base_model!r} has no LoRA adapter {params.adapter!r} "
                            f"(its adapters: {served})")
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
    _check_images(params, settings)
    if params.json_schema is not None:
        check_json_schema(params.json_schema)


def _check_images(params: GenerationParams, settings: Settings) -> None:
    urls = image_urls(params)
    if not urls:
        return
    assert settings.models is not None
    vision = [name for name, cfg in settings.models.models.items() if cfg.model_type == "multimodal"]
    check_image_count(len(urls), params.model, settings.model(params.base_model), vision)
    limits = image_limits(settings)
    for number, url in enumerate(urls, 1):
        load_image_url(url, limits, number)


def check_json_schema(schema: dict) -> None:
    """Refuse a schema that is not valid JSON Schema (checked against its meta-schema) with the reason."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise InvalidRequest(f"json_schema is not a valid JSON Schema at {where}: {exc.message}") from exc
