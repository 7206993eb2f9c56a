"""Server-sent events framing."""

from __future__ import annotations

from typing import Iterable, Iterator

from flask import Response, stream_with_context


def event(data: str, event_id: int | None = None, name: str | None = None) -> str:
    head = ""
    if event_id is not None:
        head += f"id: {event_id}\n"
    if name is not None:
        head += f"event: {name}\n"
    return f"{head}data: {data}\n\n"


def sse_response(events: Iterable[str]) -> Response:
    def generate() -> Iterator[str]:
        yield from events

    response = Response(stream_with_context(generate()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # proxies must not hold tokens back
    return response
