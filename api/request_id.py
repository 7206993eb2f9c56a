"""`X-Request-Id`: a client's own id for a request is answered back on the response, as vLLM's server does, so a
client (vLLM's benchmark client sends one with every request) can match answers and logs to what it sent."""

from __future__ import annotations

import re

from flask import Flask, Response, request

HEADER = "X-Request-Id"
# Echoed into a response header: printable ASCII only and bounded, so it can never split or bloat the headers.
_SAFE = re.compile(r"[\x21-\x7e]{1,128}")


def init_request_id(app: Flask) -> None:
    @app.after_request
    def _echo(response: Response) -> Response:
        given = request.headers.get(HEADER)
        if given and _SAFE.fullmatch(given):
            response.headers[HEADER] = given
        return response
