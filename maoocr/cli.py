"""The `maoocr` command. Transports (worker, api) run as their own modules, so this library never imports them."""

from __future__ import annotations

import argparse
import os
import sys

from maoocr import client_cli
from maoocr.errors import ConfigError
from maoocr.up_record import use_running_up

# command → (module run with `python -m`, help)
_DELEGATED = {
    "worker": ("workers.main", "run a worker: maoocr worker [--gpu N] [--model NAME] [--cpu] | maoocr worker --ocr"),
    "api": ("api.server", "run the HTTP API: maoocr api [--host H] [--port P]"),
    "flower": ("workers.flower", "run Flower (Celery monitor) with task events on: maoocr flower [--port P] "
                                 "[--basic-auth user:pass]"),
}
BENCH_MOVED = ("maoocr bench: the benchmarks are a development tool, not installed; in a source checkout run "
               "`make bench` (or `python -m bench.run --only p1,…`)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except ConfigError as exc:
        print(f"maoocr: {exc}", file=sys.stderr)
        return 2


def _run(argv: list[str]) -> int:
    if argv and argv[0] not in ("up", "apikey", "-h", "--help"):
        # Beside a running `maoocr up`, every other command talks to its Redis and API unless told otherwise.
        running = use_running_up()
        if running is not None and argv[0] in _DELEGATED:
            print(f"maoocr {argv[0]}: using the Redis of `maoocr up` (pid {running.pid}): "
                  f"{os.environ['MAOOCR_REDIS_URL']}", file=sys.stderr)
    if argv and argv[0] in _DELEGATED:
        module = _DELEGATED[argv[0]][0]
        # exec, not a child: signals (Ctrl-C, SIGTERM from a supervisor) reach the real process.
        os.execv(sys.executable, [sys.executable, "-m", module, *argv[1:]])
    if argv and argv[0] == "bench":
        print(BENCH_MOVED, file=sys.stderr)
        return 2

    parser = argparse.ArgumentParser(prog="maoocr", description="MaoOCR: documents and LLM generation as jobs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in _DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    up = sub.add_parser("up", help="run everything here: Redis (if none is configured), an LLM worker, an OCR worker and the API")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--cpu", action="store_true", help="run the worker on the CPU even if a GPU is visible")
    sub.add_parser("bench", help="moved: `make bench` in a source checkout", add_help=False)
    sub.add_parser("apikey", help="make a new API key: prints the key (for the client) and its sha256: entry "
                   "(for MAOOCR_API_KEYS or auth.api_keys, so the file never holds the key)")
    client_cli.add_arguments(sub)
    sub.add_parser("ingest", help="OCR a zip, tar or directory tree into a JSON-lines file (see maoocr ingest -h)",
                   add_help=False)
    if argv and argv[0] == "ingest":
        from maoocr.ingest.cli import main as ingest_main

        return ingest_main(argv[1:])
    args = parser.parse_args(argv)

    if args.command == "up":
        from maoocr.embedded import run_up

        return run_up(args.host, args.port, force_cpu=args.cpu)
    if args.command == "apikey":
        import secrets

        from maoocr.auth import HASH_PREFIX, digest

        key = "mao-" + secrets.token_urlsafe(32)
        print(f"key:          {key}\nconfig entry: {HASH_PREFIX}{digest(key)}")
        return 0
    if args.command in ("submit", "status", "stream"):
        return client_cli.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
