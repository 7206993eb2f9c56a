"""serve: MaoOCR against `vllm serve` on the same model and engine settings, both driven by vLLM's own client.

Both servers stay up side by side for the whole run (on a GPU each with the same memory share) and are driven
one at a time, in alternating order, by `vllm bench serve` (bench/serve_client.py): OpenAI completions and chat
completions, random prompts, `--ignore-eos`, in three scenarios — a burst, Poisson arrivals, one request at a
time. Every run's full result JSON is kept in the work directory. Prints one JSON line per figure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from devtools.processes import (
    BENCH_LOG_LEVEL,
    ROOT,
    Proc,
    free_port,
    service_env,
    start_redis,
    start_stack,
    wait_http,
)

GPU_SHARE = 0.42  # of the GPU's memory for each of the two engines loaded side by side
MODEL_NAME = "tiny"  # what both servers call the model (the name our stack's config gives it)


@dataclass(frozen=True)
class Scenario:
    name: str
    num_prompts: int
    input_len: int
    output_len: int
    request_rate: str  # "inf": all at once
    max_concurrency: int | None = None


SCENARIOS = {
    "burst": Scenario("burst", 512, 256, 256, "inf"),
    "poisson": Scenario("poisson", 600, 256, 256, "40"),
    "single": Scenario("single", 16, 128, 64, "inf", max_concurrency=1),
}
WARM_UP = Scenario("warm_up", 64, 64, 32, "inf")
BACKENDS = {"openai": "/v1/completions", "openai-chat": "/v1/chat/completions"}
PRODUCTS = ("maoocr", "vllm_serve")


@dataclass
class ServeOptions:
    gpu: bool = False
    dummy: str | None = None  # "0.5b" | "7b": that Qwen2.5 architecture with dummy weights (default: the demo model)
    rounds: int = 2
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    backends: tuple[str, ...] = tuple(BACKENDS)
    max_num_seqs: int = 512
    max_num_batched_tokens: int | None = None  # default: MaoOCR's GPU default (16384) on GPU, 4096 on CPU
    max_model_len: int = 1024
    # Both products' stream interval; None: each its own default (vllm serve 1 token a chunk; MaoOCR 8 on a GPU,
    # 1 on a CPU). vLLM's client counts a chunk as one inter-token gap, so ITL compares like with like only when equal.
    stream_interval: int | None = None


def compose_api_serving(compose_file: Path = ROOT / "docker-compose.yml") -> tuple[int, int]:
    """The gunicorn processes and threads docker compose serves the API with, read from the file itself."""
    command = yaml.safe_load(compose_file.read_text())["services"]["api"]["command"]
    return int(command[command.index("--workers") + 1]), int(command[command.index("--threads") + 1])


def engine_settings(options: ServeOptions, load_format: str, tokenizer: str) -> dict:
    from maoocr.engines.memory import GPU_BATCHED_TOKENS

    batched = options.max_num_batched_tokens or (GPU_BATCHED_TOKENS if options.gpu else 4096)
    settings = {"max_model_len": options.max_model_len, "max_num_seqs": options.max_num_seqs,
                "max_num_batched_tokens": batched, "load_format": load_format, "tokenizer": tokenizer}
    if options.stream_interval:
        settings["stream_interval"] = options.stream_interval
    if options.gpu:
        settings["gpu_memory_utilization"] = GPU_SHARE
    else:
        settings["enforce_eager"] = True  # what MaoOCR's worker does on a CPU (null = eager there)
    return settings


def vllm_serve_args(model_path: str, port: int, settings: dict) -> list[str]:
    """`vllm serve` with the same engine settings. Its access log is off: MaoOCR's API logs no access lines
    at the shipped level either."""
    args = ["serve", model_path, "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
            "--disable-log-stats", "--disable-uvicorn-access-log"]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        else:
            args += [flag, str(value)]
    return args


def vllm_env(scratch: Path) -> dict[str, str]:
    """The environment of vLLM's own processes (`vllm serve`, its client): a stack process's, without MaoOCR's
    config."""
    env = service_env(scratch / "unused.yaml", scratch)
    env.pop("MAOOCR_CONFIG")
    return env


def start_vllm_serve(work: Path, model_path: str, settings: dict, gpu: bool) -> tuple[Proc, str]:
    port = free_port()
    env = vllm_env(work / "vllm-serve-tmp")
    env.update(VLLM_NO_USAGE_STATS="1", VLLM_CACHE_ROOT=str(work / "vllm-serve-cache"))
    if not gpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # the KV cache MaoOCR's worker gives itself on a CPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    log = work / "logs" / "vllm-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    popen = subprocess.Popen([sys.executable, "-m", "bench.vllm_cli", *vllm_serve_args(model_path, port, settings)],
                             cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return Proc("vllm-serve", popen, log), f"http://127.0.0.1:{port}"


def client_args(scenario: Scenario, backend: str, base_url: str, tokenizer: str, seed: int) -> list[str]:
    args = ["--backend", backend, "--base-url", base_url, "--endpoint", BACKENDS[backend], "--model", MODEL_NAME,
            "--tokenizer", tokenizer, "--dataset-name", "random", "--random-input-len", str(scenario.input_len),
            "--random-output-len", str(scenario.output_len), "--num-prompts", str(scenario.num_prompts),
            "--request-rate", scenario.request_rate, "--ignore-eos", "--seed", str(seed),
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99", "--disable-tqdm",
            "--ready-check-timeout-sec", "0", "--save-detailed"]
    if scenario.max_concurrency:
        args += ["--max-concurrency", str(scenario.max_concurrency)]
    return args


def plan(options: ServeOptions, urls: dict[str, str], tokenizer: str, results: Path) -> list[dict]:
    """Warm-ups, then every (round, scenario, backend) for both products back to back, the order alternating.
    Both products get the same prompts (the same seed) within a round; each round has new ones."""
    runs = []
    for b, backend in enumerate(options.backends):
        for product in PRODUCTS:
            runs.append({"product": product, "scenario": WARM_UP.name, "backend": backend, "round": -1,
                         "args": client_args(WARM_UP, backend, urls[product], tokenizer, 999 + b),
                         "out": str(results / f"warm_up-{backend}-{product}.json")})
    turn = 0
    for r in range(options.rounds):
        for s, name in enumerate(options.scenarios):
            for b, backend in enumerate(options.backends):
                order = PRODUCTS if turn % 2 == 0 else PRODUCTS[::-1]
                turn += 1
                seed = 1000 * (r + 1) + 10 * s + b
                for product in order:
                    runs.append({"product": product, "scenario": name, "backend": backend, "round": r,
                                 "args": client_args(SCENARIOS[name], backend, urls[product], tokenizer, seed),
                                 "out": str(results / f"{name}-{backend}-r{r}-{product}.json")})
    return runs


def run_client(runs: list[dict], work: Path, env: dict[str, str]) -> None:
    plan_file = work / "client-plan.json"
    plan_file.write_text(json.dumps([{"args": r["args"], "out": r["out"]} for r in runs]))
    log = work / "logs" / "client.log"
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "bench.serve_client", str(plan_file)], cwd=ROOT, env=env, check=False,
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"vLLM's benchmark client failed ({done.returncode}):\n"
                           + "\n".join(log.read_text().splitlines()[-40:]))


LATENCIES = {"ttft_p50_ms": "median_ttft_ms", "ttft_p99_ms": "p99_ttft_ms", "tpot_p50_ms": "median_tpot_ms",
             "tpot_p99_ms": "p99_tpot_ms", "itl_p50_ms": "median_itl_ms", "itl_p99_ms": "p99_itl_ms"}


def long_gaps(result: dict) -> dict:
    """Where in their streams the gaps above the run's ITL p99 fell (token positions): early gaps point at the
    requests still arriving, spread ones at steady-state stalls."""
    itls = result.get("itls") or []
    positions = [i for gaps in itls for i, gap in enumerate(gaps) if gap * 1000 > result["p99_itl_ms"]]
    if not positions:
        return {}
    return {"long_gaps": len(positions), "long_gap_position_p50": statistics.median(positions),
            "long_gaps_in_first_16_tokens": round(sum(p < 16 for p in positions) / len(positions), 3)}


def summarise(result: dict) -> dict:
    """The figures of one client run (vLLM's own result keys)."""
    summary = {k: round(result[v], 2) for k, v in LATENCIES.items()}
    summary.update(long_gaps(result))
    failed = result.get("failed", result["num_prompts"] - result["completed"])
    errors = [e for e in result.get("errors", []) if e][:3]
    return {"output_tok_s": round(result["output_throughput"], 1), "completed": result["completed"],
            "failed": failed, **summary, **({"errors": errors} if errors else {})}


def figures(runs: list[dict], common: dict) -> Iterator[dict]:
    by_key: dict[tuple, dict[str, list[dict]]] = {}
    for run in runs:
        if run["round"] < 0 or not Path(run["out"]).exists():  # a warm-up, or a run the time limit cut off
            continue
        result = json.loads(Path(run["out"]).read_text())
        by_key.setdefault((run["scenario"], run["backend"]), {}).setdefault(run["product"], []).append(
            summarise(result))
    for (scenario, backend), products in by_key.items():
        ours, theirs = products.get("maoocr", []), products.get("vllm_serve", [])
        if not ours or not theirs:
            continue
        where = {"scenario": scenario, "backend": backend, **common}

        def median(rows: list[dict], key: str) -> float:
            return round(statistics.median(row[key] for row in rows), 2)

        if scenario != "single":
            ratios = [round(o["output_tok_s"] / t["output_tok_s"], 3) for o, t in zip(ours, theirs)]
            yield {"metric": "serve_output_tps_ratio", "value": round(statistics.median(ratios), 3),
                   "rounds": ratios, "maoocr_output_tok_s": [o["output_tok_s"] for o in ours],
                   "vllm_serve_output_tok_s": [t["output_tok_s"] for t in theirs], "goal": ">= 0.95", **where}
        yield {"metric": "serve_latency_ms", **where,
               "maoocr": {key: median(ours, key) for key in LATENCIES},
               "vllm_serve": {key: median(theirs, key) for key in LATENCIES},
               "note": "medians over rounds of each run's p50 / p99"}
        yield {"metric": "serve_itl_p99_ratio", "value": round(median(ours, "itl_p99_ms") / median(theirs,
               "itl_p99_ms"), 3), "goal": "<= 1.2", **where,
               **{f"{name}_long_gaps": [{k: v for k, v in row.items() if "gap" in k} for row in rows]
                  for name, rows in (("maoocr", ours), ("vllm_serve", theirs))}}
        if scenario == "single":
            yield {"metric": "serve_ttft_p50_excess_ms",
                   "value": round(median(ours, "ttft_p50_ms") - median(theirs, "ttft_p50_ms"), 2),
                   "goal": "<= 10", **where}
        errors = [row["errors"] for row in ours + theirs if "errors" in row]
        yield {"metric": "serve_failed_requests", **where,
               "maoocr": sum(o["failed"] for o in ours), "vllm_serve": sum(t["failed"] for t in theirs),
               **({"errors": errors} if errors else {})}


def build_model(options: ServeOptions, work: Path) -> tuple[str, str, str]:
    """(model path, tokenizer path, load format)."""
    if options.dummy:
        from bench.dummy_model import build_dummy_model, tokenizer_dir

        path = build_dummy_model(work / "model", options.dummy)
        return str(path), str(tokenizer_dir(path)), "dummy"
    from maoocr.engines.demo_model import build_demo_model

    path = build_demo_model(work / "model")
    return str(path), str(path), "auto"


def client_version() -> str:
    from importlib import metadata

    for name in ("vllm", "vllm-cpu"):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def run(options: ServeOptions) -> Iterator[dict]:
    work = Path(tempfile.mkdtemp(prefix="maoocr-serve-"))
    model_path, tokenizer, load_format = build_model(options, work)
    settings = engine_settings(options, load_format, tokenizer)
    api_workers, api_threads = compose_api_serving()
    from maoocr.engines.memory import GPU_STREAM_INTERVAL

    stream_interval = {"maoocr": options.stream_interval or (GPU_STREAM_INTERVAL if options.gpu else 1),
                       "vllm_serve": options.stream_interval or 1}
    common = {"device": "gpu" if options.gpu else "cpu", "model": options.dummy or "demo",
              "stream_interval": stream_interval,
              "engine": {k: v for k, v in settings.items() if k not in ("tokenizer",)},
              "maoocr_api": f"gunicorn gthread x{api_workers}, {api_threads} threads (docker-compose.yml)",
              "llm_workers": 1, "client": f"vllm bench serve ({client_version()})", "rounds": options.rounds}
    redis_proc, redis_url = start_redis(work / "redis")
    stack = serve = None
    try:
        stack = start_stack(work, redis_url, model_path, ["--gpu", "0"] if options.gpu else ["--cpu"],
                            model={k: v for k, v in settings.items() if k != "enforce_eager"},
                            api_workers=api_workers, api_threads=api_threads, log_level=BENCH_LOG_LEVEL)
        serve, serve_url = start_vllm_serve(work, model_path, settings, options.gpu)
        wait_http(serve_url + "/health", [serve])
        results = work / "results"
        results.mkdir()
        runs = plan(options, {"maoocr": stack.base_url, "vllm_serve": serve_url}, tokenizer, results)
        (results / "runs.json").write_text(json.dumps({"runs": runs, "common": common}))
        run_client(runs, work, vllm_env(work / "client-tmp"))
        yield from figures(runs, {**common, "results": str(results)})
    finally:
        if serve is not None:
            serve.stop()
        if stack is not None:
            stack.stop()
        redis_proc.stop()


def figures_from(results: Path) -> Iterator[dict]:
    """The figures again from a run's saved results folder (also one a time limit cut short)."""
    saved = json.loads((results / "runs.json").read_text())
    runs = [{**run, "out": str(results / Path(run["out"]).name)} for run in saved["runs"]]
    yield from figures(runs, {**saved["common"], "results": str(results)})


if __name__ == "__main__":
    # `python -m bench.serve_compare RESULTS_DIR`: print the figures of saved results.
    for figure in figures_from(Path(sys.argv[1])):
        print(json.dumps(figure), flush=True)
