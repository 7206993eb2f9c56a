#!/usr/bin/env bash
# Installs the programs the benchmarks compare MaoOCR with (Tesseract 5 and its English model) when missing.
# Idempotent and quiet; needs root (or sudo) for apt-get. Benchmarks still run without them and say so.
set -euo pipefail

command -v tesseract >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_bench_tools.sh: no apt-get here; install tesseract-ocr (5.x) with your package manager" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install_bench_tools.sh: need root to install tesseract-ocr" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show tesseract-ocr >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! $SUDO apt-get install -y -qq --no-install-recommends tesseract-ocr tesseract-ocr-eng >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_bench_tools.sh: tesseract-ocr not installed; the doc_accuracy bench will skip it" >&2
fi
