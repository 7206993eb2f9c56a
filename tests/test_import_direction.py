"""The direction of imports: maoocr ← api, workers ← bench, tests (devtools holds what those two share). What ships
never imports what does not, the library imports neither Flask nor Celery, and the API never imports the workers:
it queues jobs by task name (`maoocr.tasks`)."""

from __future__ import annotations

import subprocess
import sys

from devtools.processes import ROOT


def importing(modules: str, *packages: str) -> str:
    """The lines of `packages` that import one of `modules` (a regex alternation)."""
    found = subprocess.run(["grep", "-rnE", rf"^\s*(from|import) ({modules})\b", *packages], cwd=ROOT,
                           capture_output=True, text=True)
    return found.stdout


def test_what_ships_never_imports_the_development_tools():
    assert importing("tests|bench|devtools", "maoocr", "api", "workers") == ""
    assert importing("tests", "bench", "devtools") == ""


def test_the_library_imports_neither_the_transports_nor_their_frameworks():
    assert importing("api|workers|flask|celery|kombu", "maoocr") == ""
    assert importing("workers|celery|kombu", "api") == ""


def test_maoocr_bench_points_to_the_source_checkout():
    done = subprocess.run([sys.executable, "-m", "maoocr.cli", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "make bench" in done.stderr
