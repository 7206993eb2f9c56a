"""VLM OCR backend: a multimodal model transcribes the page image, behind the same `OCREngine` interface.

The model is reached through an injected `Generate` callable: a resident engine in this process (library API)
or a generation job on the model's queue (OCR worker). A VLM gives text, not geometry: its lines carry no
polygon (`[]`) and confidence 0.0 (not measured). Any failure raises, so the page pipeline can fall back to
PP-OCR and say why (`maoocr.pipeline.page`).
"""

from __future__ import annotations

import re
import time

from PIL import Image

from maoocr.documents import paper_rgb
from maoocr.errors import EngineError
from maoocr.generation.call import Generate, answer_text, image_question
from maoocr.ocr.base import OCREngine
from maoocr.ocr.types import OCRLine, PageOCR
from maoocr.protocol.generation import GenerationParams, GenerationResult

_PARAGRAPH = re.compile(r"\n[ \t]*\n")
# Plain text, reading order and "nothing else": what OCR-tuned VLMs (Qwen2-VL, olmOCR, GOT) answer best to.
TRANSCRIBE = ("Transcribe all text on this page exactly as written, in reading order: each column top to bottom, "
              "columns left to right. One line of output per line of text, a blank line between paragraphs and "
              "columns. Output only the text, with no commentary.")


class VLMOCREngine(OCREngine):
    def __init__(self, model: str, generate: Generate, *, max_tokens: int = 2048, max_side: int = 1536,
                 timeout_s: float = 300.0, instruction: str = TRANSCRIBE, ignore_eos: bool = False) -> None:
        self.model = model
        self.name = f"vlm:{model}"
        self.generate = generate
        self.max_tokens = max_tokens
        self.max_side = max_side
        self.timeout_s = timeout_s
        self.instruction = instruction
        self.ignore_eos = ignore_eos  # benchmarks: a fixed answer length, the whole answer taken as the page text

    def recognize(self, image: Image.Image) -> PageOCR:
        start = time.perf_counter()
        params, size = self.question(image)
        return self.reading(self.generate(params, self.timeout_s), size, (time.perf_counter() - start) * 1000.0)

    def question(self, image: Image.Image) -> tuple[GenerationParams, tuple[int, int]]:
        """What the model is asked about the page, and the size of the page it reads."""
        page = paper_rgb(image)
        params = GenerationParams(model=self.model, messages=image_question(page, self.instruction, self.max_side),
                                  max_tokens=self.max_tokens, temperature=0.0, ignore_eos=self.ignore_eos)
        return params, page.size

    def reading(self, result: GenerationResult, size: tuple[int, int], elapsed_ms: float) -> PageOCR:
        """The page from the model's answer; raises when the answer is no transcription."""
        text = answer_text(result, f"VLM {self.model!r}", cut_is_whole=self.ignore_eos).strip()
        if not text:
            raise EngineError(f"VLM {self.model!r} returned no text for the page", code="empty_answer")
        blocks = [[line.strip() for line in para.splitlines() if line.strip()] for para in _PARAGRAPH.split(text)]
        blocks = [block for block in blocks if block]
        lines = [OCRLine(text=line, polygon=[], confidence=0.0, block=i) for i, block in enumerate(blocks)
                 for line in block]
        return PageOCR(lines=lines, text="\n\n".join("\n".join(block) for block in blocks), engine=self.name,
                       orientation=0, width=size[0], height=size[1], timings_ms={"vlm": round(elapsed_ms, 3)})
