"""`maoocr submit | status | stream`: the document API from a shell, over HTTP (no server code imported)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests

DEFAULT_API = "http://127.0.0.1:8000"


def api_url(args: argparse.Namespace) -> str:
    return (args.api or os.environ.get("MAOOCR_API_URL") or DEFAULT_API).rstrip("/")


def auth_headers(args: argparse.Namespace) -> dict[str, str]:
    key = getattr(args, "api_key", None) or os.environ.get("MAOOCR_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def add_arguments(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="upload a document for OCR and print its job id (or its text with --wait)")
    submit.add_argument("file", type=Path)
    submit.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    submit.add_argument("--strategy", choices=["auto", "fast", "accurate", "vlm"], default="auto")
    submit.add_argument("--pages", help="page range, e.g. 2-5")
    submit.add_argument("--format", choices=["text", "markdown", "json"], default="text", help="with --wait")
    submit.add_argument("--keep-headers", action="store_true",
                        help="keep running headers, footers and page numbers in text and markdown")
    status = sub.add_parser("status", help="print a job record as JSON")
    status.add_argument("job_id")
    stream = sub.add_parser("stream", help="follow a job's events (replayed, then live) as JSON lines")
    stream.add_argument("job_id")
    for parser in (submit, status, stream):
        parser.add_argument("--api", help=f"API base URL (default: $MAOOCR_API_URL or {DEFAULT_API})")
        parser.add_argument("--api-key", help="API key sent as a Bearer token (default: $MAOOCR_API_KEY)")


def run(args: argparse.Namespace) -> int:
    try:
        return {"submit": submit, "status": status, "stream": stream}[args.command](args)
    except requests.ConnectionError:
        print(f"error: no MaoOCR API at {api_url(args)} (start one with `maoocr up`)", file=sys.stderr)
        return 2


def _fail(reply: requests.Response) -> int:
    try:
        error = reply.json()["error"]
        print(f"error {reply.status_code}: {error['code']}: {error['message']}", file=sys.stderr)
    except (ValueError, KeyError):
        print(f"error {reply.status_code}: {reply.text[:500]}", file=sys.stderr)
    return 1


def submit(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"error: {args.file} is not a file", file=sys.stderr)
        return 2
    form = {"strategy": args.strategy, **({"pages": args.pages} if args.pages else {}),
            **({"keep_headers": "true"} if args.keep_headers else {})}
    with args.file.open("rb") as handle:
        reply = requests.post(api_url(args) + "/v1/documents", files={"file": (args.file.name, handle)},
                              data=form, headers=auth_headers(args), timeout=300)
    if reply.status_code != 202:
        return _fail(reply)
    job_id = reply.json()["job_id"]
    if not args.wait:
        print(job_id)
        return 0
    while True:
        record = requests.get(f"{api_url(args)}/v1/jobs/{job_id}", headers=auth_headers(args), timeout=30).json()
        if record["status"] in ("succeeded", "failed", "cancelled"):
            break
        progress = record.get("progress") or {}
        print(f"\r{job_id}: {record['status']} {progress.get('done', 0)}/{progress.get('total', '?')} pages",
              end="", file=sys.stderr, flush=True)
        time.sleep(0.5)
    print(file=sys.stderr)
    if record["status"] != "succeeded":
        print(f"job {job_id} {record['status']}: {json.dumps(record.get('error'))}", file=sys.stderr)
        return 1
    result = requests.get(f"{api_url(args)}/v1/jobs/{job_id}/result", params={"format": args.format},
                          headers=auth_headers(args), timeout=60)
    print(result.text)
    return 0


def status(args: argparse.Namespace) -> int:
    reply = requests.get(f"{api_url(args)}/v1/jobs/{args.job_id}", headers=auth_headers(args), timeout=30)
    if reply.status_code != 200:
        return _fail(reply)
    print(json.dumps(reply.json(), indent=2, ensure_ascii=False))
    return 0


def stream(args: argparse.Namespace) -> int:
    reply = requests.get(f"{api_url(args)}/v1/jobs/{args.job_id}/events", headers=auth_headers(args), stream=True,
                         timeout=(10, None))
    if reply.status_code != 200:
        return _fail(reply)
    for line in reply.iter_lines(decode_unicode=True):
        if line and line.startswith("data: "):
            print(line[len("data: "):], flush=True)
    return 0
