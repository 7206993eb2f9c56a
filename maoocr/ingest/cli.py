"""`maoocr ingest PATH --out FILE.jsonl`: OCR every document of an archive or folder through the API."""

from __future__ import annotations

import argparse
import sys

from maoocr.ingest.archive import MiB, IngestLimits, SourceError
from maoocr.ingest.runner import IngestConfig, default_api_url, exit_code, ingest

_DEFAULTS = IngestLimits()


def build_parser(prog: str = "maoocr ingest") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Send every file of a zip, a tar (.gz/.bz2/.xz) or a folder to the MaoOCR API and "
        "write one JSON line per file to --out. Re-running with the same --out skips files that succeeded and "
        "waits on the jobs an interrupted run left instead of sending their files again.")
    parser.add_argument("path", help="zip, tar or folder (recognised by content, not by name)")
    parser.add_argument("--out", required=True, help="JSONL results, one line per file (and resumed from)")
    parser.add_argument("--api", default=default_api_url(),
                        help="API base URL (default: $MAOOCR_API_URL or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", default=None, help="API key sent as a Bearer token (default: $MAOOCR_API_KEY)")
    parser.add_argument("--concurrency", type=int, default=4, help="files in flight at once (default 4)")
    parser.add_argument("--strategy", choices=["auto", "fast", "accurate", "vlm"], help="OCR strategy per page")
    parser.add_argument("--keep-headers", action="store_true",
                        help="keep running headers, footers and page numbers in text and markdown")
    parser.add_argument("--priority", default="bulk",
                        help="job priority: 0 (first) to 9 (last), 'interactive' or 'bulk' (default: bulk, the "
                             "server's level for bulk work, behind interactive requests)")
    parser.add_argument("--max-attempts", type=int, default=5, help="uploads per file on transient errors")
    parser.add_argument("--job-timeout", type=float, default=3600.0, help="seconds to wait for one job")
    parser.add_argument("--max-files", type=int, help="send at most this many files, then stop")
    parser.add_argument("--max-entries", type=int, default=_DEFAULTS.max_entries)
    parser.add_argument("--max-file-mb", type=float, default=_DEFAULTS.max_entry_bytes / MiB,
                        help="largest file, uncompressed (MiB)")
    parser.add_argument("--max-total-mb", type=float, default=_DEFAULTS.max_total_bytes / MiB,
                        help="largest sum of all files, uncompressed (MiB)")
    parser.add_argument("--max-ratio", type=float, default=_DEFAULTS.max_ratio,
                        help="highest compression ratio of a file of 1 MiB or more")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 when every file ended for a reason, 1 when some can be re-sent, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        limits = IngestLimits(max_entries=args.max_entries, max_entry_bytes=int(args.max_file_mb * MiB),
                              max_total_bytes=int(args.max_total_mb * MiB), max_ratio=args.max_ratio)
        config = IngestConfig(api_url=args.api, **({"api_key": args.api_key} if args.api_key else {}),
                              concurrency=args.concurrency, max_attempts=args.max_attempts,
                              job_timeout_s=args.job_timeout, max_files=args.max_files,
                              form=_form(args),
                              progress=not args.no_progress)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        parser.error(str(exc))
    try:
        summary = ingest(args.path, args.out, config, limits)
    except SourceError as exc:
        print(f"maoocr ingest: {exc}", file=sys.stderr)
        return 2
    return exit_code(summary)


def _form(args: argparse.Namespace) -> dict[str, str]:
    form = {"strategy": args.strategy} if args.strategy else {}
    form["priority"] = str(args.priority)  # the runner's default is 'bulk' too
    if args.keep_headers:
        form["keep_headers"] = "true"
    return form


if __name__ == "__main__":
    sys.exit(main())
