"""`maoocr bench [--only p1,complexity]`: runs benchmarks and prints one JSON line per figure."""

from __future__ import annotations

import argparse
import json
import sys


def _p1(args) -> list[dict]:
    from bench import p1_batching

    return p1_batching.run(concurrency=args.concurrency, max_tokens=args.max_tokens, model_path=args.model_path)


def _complexity(args) -> list[dict]:
    from bench import complexity_bench

    return complexity_bench.run()


BENCHMARKS = {"p1": _p1, "complexity": _complexity}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maoocr bench")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated: {', '.join(BENCHMARKS)}")
    parser.add_argument("--concurrency", type=int, default=32, help="P1: concurrent jobs")
    parser.add_argument("--max-tokens", type=int, default=128, help="P1: output tokens per job")
    parser.add_argument("--model-path", help="P1: weights to serve (default: the tiny demo model)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    for name in chosen:
        for figure in BENCHMARKS[name](args):
            print(json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
