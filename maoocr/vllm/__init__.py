"""The published `maoocr.vllm` names, as thin faces over MaoOCR's design (see maoocr/vllm/faces.py).

Imported lazily, attribute by attribute, so `import maoocr.vllm` loads neither vLLM nor OpenCV.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "VLLMServiceManager": "maoocr.vllm.faces",
    "MultiInterfaceAPIAdapter": "maoocr.vllm.faces",
    "VLLMMultimodalProcessor": "maoocr.vllm.faces",
    "MemoryOptimizer": "maoocr.vllm.faces",
    "VLLMComplexityAnalyzer": "maoocr.pipeline.vlm_analysis",
    "VLLMStrategySelector": "maoocr.vllm.faces",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from maoocr.pipeline.vlm_analysis import VLLMComplexityAnalyzer
    from maoocr.vllm.faces import (MemoryOptimizer, MultiInterfaceAPIAdapter, VLLMMultimodalProcessor,
                                   VLLMServiceManager, VLLMStrategySelector)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'maoocr.vllm' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
