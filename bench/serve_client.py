"""vLLM's own benchmark client (`vllm bench serve`), run for a list of benchmark runs in one process.

`python -m bench.serve_client PLAN.json`: PLAN is a list of runs, each `{"args": [...vllm bench serve
arguments...], "out": "result.json"}`. Each run is exactly what `vllm bench serve ARGS` does (the same argument
parser, the same `main`); one process for all of them spares a vLLM import (seconds) per run. Each run's result
dict, as vLLM's `--save-result` writes it, goes to its `out`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _parser():
    from vllm.benchmarks.serve import add_cli_args

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older vLLM releases keep it in vllm.utils
        from vllm.utils import FlexibleArgumentParser
    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    return parser


def main(argv: list[str]) -> int:
    from bench.vllm_cli import answer_vllm_version

    answer_vllm_version()
    from vllm.benchmarks.serve import main as bench_serve

    parser = _parser()
    for run in json.loads(Path(argv[0]).read_text()):
        result = bench_serve(parser.parse_args(run["args"]))
        result.pop("generated_texts", None)  # the texts are random; the per-request timings are what is kept
        Path(run["out"]).write_text(json.dumps(result, default=str))
        print(f"done: {run['out']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
