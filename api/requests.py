"""Reading request bodies into pydantic models with clear 400s (malformed JSON, wrong types, missing fields)."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel

from maoocr.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def json_body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # json.loads gives up on deep nesting with this, not a ValueError
        raise InvalidRequest("the request body is nested too deeply") from None
    if data is None:
        raw = request.get_data(cache=True)
        if not raw:
            raise InvalidRequest("the request body is empty; send a JSON object")
        raise InvalidRequest("the request body is not valid JSON")
    if not isinstance(data, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    return data


def parse_body(model: type[M]) -> M:
    return model.model_validate(json_body())
