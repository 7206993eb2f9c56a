"""vLLM's own benchmark client (`vllm bench serve`, unmodified) against the API: everything it sends is understood
(`max_completion_tokens`, `stream_options.include_usage`, `ignore_eos`, `x-request-id`, its `/tokenize` probe),
on OpenAI completions and chat completions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from bench.serve_compare import BACKENDS, MODEL_NAME, Scenario, client_args
from devtools.processes import ROOT, service_env

PROMPTS, OUTPUT_LEN = 6, 12


def test_vllm_benchmark_client_gets_every_answer(stack, tiny_model, tmp_path):
    scenario = Scenario("test", PROMPTS, 16, OUTPUT_LEN, "inf")
    runs = [{"args": client_args(scenario, backend, stack.base_url, str(tiny_model), seed=7),
             "out": str(tmp_path / f"{backend}.json")} for backend in BACKENDS]
    (tmp_path / "plan.json").write_text(json.dumps(runs))
    env = service_env(stack.config, tmp_path / "tmp")
    done = subprocess.run([sys.executable, "-m", "bench.serve_client", str(tmp_path / "plan.json")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for run in runs:
        result = json.loads(Path(run["out"]).read_text())
        assert result["completed"] == PROMPTS and result.get("failed", 0) == 0, result.get("errors")
        # Output counted from each stream's usage chunk: ignore_eos and max_completion_tokens / max_tokens held.
        assert result["total_output_tokens"] == PROMPTS * OUTPUT_LEN, run["args"][1]
        assert result["median_ttft_ms"] > 0 and result["median_itl_ms"] > 0


def test_request_id_is_answered_back(stack):
    body = {"model": MODEL_NAME, "prompt": "hello there", "max_tokens": 2}
    answer = requests.post(stack.base_url + "/v1/completions", json=body, headers={"X-Request-Id": "bench-7-abc"},
                           timeout=60)
    assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "bench-7-abc"
    # An id that could split or bloat the response headers is not echoed.
    odd = requests.post(stack.base_url + "/v1/completions", json=body, headers={"X-Request-Id": "x" * 500},
                        timeout=60)
    assert odd.status_code == 200 and "X-Request-Id" not in odd.headers


def test_tokenize_probe_gets_a_clear_404(stack):
    for path in ("/tokenize", "/detokenize"):
        answer = requests.post(stack.base_url + path, json={"model": MODEL_NAME, "prompt": "hi"}, timeout=10)
        assert answer.status_code == 404
        assert "does not tokenize" in answer.json()["error"]["message"]


def test_first_chat_chunk_carries_the_first_token(stack):
    """A role-only first chunk would let a client time its first token before any token exists. The OpenAI stream
    is held against the job's own stream: one frame per token chunk (plus a closing frame when the last token chunk
    carries no finish_reason), and the first frame is the first token chunk's text with the role."""
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4,
            "ignore_eos": True, "stream": True}
    with requests.post(stack.base_url + "/v1/chat/completions", json=body, stream=True, timeout=60) as answer:
        frames = [json.loads(line[len(b"data: "):]) for line in answer.iter_lines()
                  if line.startswith(b"data: {")]
    with_choices = [f for f in frames if f["choices"]]
    job_id = frames[0]["id"].split("-", 1)[1]
    with requests.get(f"{stack.base_url}/v1/jobs/{job_id}/events", stream=True, timeout=60) as events:
        chunks = [json.loads(line[len(b"data: "):]) for line in events.iter_lines() if line.startswith(b"data: ")]
    tokens = [c for c in chunks if c["event"] == "token"]
    assert 1 <= len(tokens) <= 4
    assert len(with_choices) == len(tokens) + (0 if tokens[-1]["finish_reason"] else 1)
    assert with_choices[0]["choices"][0]["delta"] == {"role": "assistant", "content": tokens[0]["delta"]}
