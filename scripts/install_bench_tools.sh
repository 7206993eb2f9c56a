#!/usr/bin/env bash
# Installs the programs the benchmarks compare MaoOCR with (Tesseract 5 and its English model) when missing.
# Idempotent and quiet; needs root (or sudo) for apt-get. Benchmarks still run without them and say so.
set -euo pipefail

command -v tesseract >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_bench_tools.sh: no apt-get here; install tesseract-ocr (5.x) with your package manager" >&2
    exit 0
fi
# shellcheck source=apt_install.sh
source "$(dirname "$0")/apt_install.sh"
if ! apt_install install_bench_tools.sh tesseract-ocr tesseract-ocr-eng; then
    echo "install_bench_tools.sh: tesseract-ocr not installed; the doc_accuracy bench will skip it" >&2
fi
