#!/usr/bin/env bash
# On the GPU host, after ../shared/gpu's parts were carried: install vLLM 0.25.1 (into /tmp/site) and
# MaoOCR's own Python needs (bench/gpu_wheels.sh built .gpuw; into /tmp/site2), and put the carried
# redis-server on PATH. Source it: `source bench/gpu_setup.sh`.
set -e
bash "$(ls .gpu*/install.sh | head -1)"
if [ ! -f /tmp/site2/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site2 .gpuw/wheels/*.whl
  mkdir -p /tmp/bin && cp .gpuw/redis-server /tmp/bin/ && chmod +x /tmp/bin/redis-server
  touch /tmp/site2/.done
fi
export PYTHONPATH=/tmp/site:/tmp/site2:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 PATH=/tmp/bin:$PATH
set +e
