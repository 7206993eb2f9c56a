"""`maoocr flower`: Flower, the Celery monitor, on the project's Celery app, with task events switched on.

Workers start with task events off (`task_events: false`; they cost an LLM worker's main thread time).
Flower needs them: this command broadcasts `enable_events` before Flower starts (Flower itself repeats it every
5 s, which reaches workers started later) and, unless the config keeps events on, `disable_events` when it exits.
"""

from __future__ import annotations

import argparse
import logging
import sys


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="maoocr flower", description=__doc__,
                                     epilog="Other options are passed to Flower (e.g. --url_prefix=flower).")
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--basic-auth", metavar="USER:PASS",
                        help="require HTTP basic auth (or set FLOWER_BASIC_AUTH); Flower's /api/* answers 401 "
                             "without some authentication")
    return parser.parse_known_args(argv)


def flower_argv(args: argparse.Namespace, extra: list[str]) -> list[str]:
    argv = ["flower", f"--port={args.port}", f"--address={args.address}"]
    if args.basic_auth:
        if ":" not in args.basic_auth:
            raise SystemExit("maoocr flower: --basic-auth must look like user:password")
        argv.append(f"--basic-auth={args.basic_auth}")
    return argv + extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    argv_for_flower = flower_argv(args, extra)

    from maoocr.config import load_settings
    from maoocr.logs import setup_logging
    from workers.celery_app import create_celery_app

    settings = load_settings()
    setup_logging(settings.log_level)
    log = logging.getLogger("maoocr.flower")
    app = create_celery_app(settings)
    # Now rather than at Flower's first timer tick, so tasks sent right after start-up are seen too.
    app.control.enable_events()
    try:
        return app.start(argv_for_flower) or 0
    finally:
        if not settings.task_events:
            try:
                app.control.disable_events()  # back to the configured default; workers stop paying for events
            except Exception as exc:  # Redis gone at shutdown: workers keep events on until they restart
                log.warning("could not switch task events off again: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
