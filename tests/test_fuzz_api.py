"""Schemathesis against the live stack's own `/openapi.json`: valid and invalid requests to every operation,
and no answer may be a 5xx.

Bounded so it ends in a few minutes on CPUs: a fixed number of examples per operation, no shrinking, and
generation requests tamed to a few tokens (the fuzzer would otherwise ask for thousands of tokens n times,
which tests the CPU, not the API). Everything else about those requests is left as generated.
"""

from __future__ import annotations

import json
import time

import redis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from maoocr.store.keys import WORKER_KEY

EXAMPLES = 25
MAX_TOKENS = 4
MAX_N = 2


def tame(body):
    """Clamp the costly knobs of a generation request, wherever they have a usable type."""
    if not isinstance(body, dict):
        return body
    for key, cap in (("max_tokens", MAX_TOKENS), ("max_completion_tokens", MAX_TOKENS), ("n", MAX_N)):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            body[key] = cap
    return body


def test_no_request_gets_a_5xx(stack):
    # Driven by hand rather than by schemathesis' pytest plugin, whose fixture loader fails on pytest 9; this
    # also lets one run list every 5xx at once instead of stopping at the first.
    schema = schemathesis.openapi.from_url(stack.base_url + "/openapi.json")
    server_errors: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/ws/stream":
            continue  # a WebSocket upgrade, not a request/response operation (fuzzed in test_bad_input)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck), database=None)
            def run(case) -> None:
                nonlocal calls
                case.body = tame(case.body)
                response = case.call(base_url=stack.base_url, timeout=120)
                calls += 1
                if response.status_code >= 500:
                    server_errors.append(f"{case.method} {case.formatted_path} ({mode.value}) -> "
                                         f"{response.status_code}: {response.text[:300]}\n  {case.as_curl_command()}")

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.path  # nothing to get wrong (e.g. /healthz)
    print(f"fuzz: {calls} requests, {len(server_errors)} 5xx")
    wait_until_idle(stack)
    assert calls > 10 * EXAMPLES
    assert not server_errors, "\n".join(server_errors)


def wait_until_idle(stack, timeout_s: float = 300) -> None:
    """Let the generation jobs the fuzzer queued finish, so later tests on the shared stack start from idle."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = [json.loads(v) for v in map(client.get, client.scan_iter(WORKER_KEY.format("*"))) if v]
        busy = any(sum(w.get("load", {}).values()) for w in workers if w.get("kind") == "llm")
        queued = sum(client.llen(key) for key in client.scan_iter("maoocr.llm.*") if client.type(key) == "list")
        if not busy and not queued:
            return
        time.sleep(0.5)
