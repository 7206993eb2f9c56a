"""LLM strategy selection: a language model picks fast / accurate / vlm from the page analysis and the resource
state, JSON-constrained and validated by pydantic; on any failure the rules in `strategy.py` decide, and the
reason says the model failed and why.

Only `auto` pages are asked about: an explicit request is the caller's decision (the rules honour it, or say why
they cannot). A choice of `vlm` while no VLM is available is refused like an invalid answer.
"""

from __future__ import annotations

import json
import logging

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from maoocr.generation.call import Generate, answer_text, describe_failure
from maoocr.pipeline.complexity_models import ComplexityAnalysis
from maoocr.pipeline.strategy import (DEFAULT_VLM_QUEUE, Requested, ResourceState, Strategy, StrategyDecision,
                                      select_strategy)
from maoocr.protocol.generation import ChatMessage, GenerationParams

log = logging.getLogger(__name__)


class StrategyChoice(BaseModel):
    """The model's answer; its JSON schema constrains the output."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy
    reason: str = Field(min_length=1, max_length=300)


CHOICE_SCHEMA = StrategyChoice.model_json_schema()
SYSTEM = ("You route document pages to an OCR engine. Strategies: 'fast' = small PP-OCR models, for clean simple "
          "pages; 'accurate' = larger PP-OCR models, for medium pages (columns, noise, small text); 'vlm' = a "
          "vision-language model on a GPU, for complex pages (tables, handwriting, heavy degradation), only when a "
          "VLM is available and a GPU has memory to spare, since it is slow and scarce. Answer with one JSON object: "
          "strategy and reason (one short sentence with the numbers that decided it).")


class LLMStrategySelector:
    """`select(analysis, resources, requested)` like `select_strategy`, asking a language model first."""

    def __init__(self, model: str, generate: Generate, *, vlm_queue: str = DEFAULT_VLM_QUEUE,
                 vlm_min_free_mb: int = 4096, vlm_max_queue: int = 64, max_tokens: int = 256,
                 timeout_s: float = 60.0) -> None:
        self.model = model
        self.generate = generate
        self.rules = dict(vlm_queue=vlm_queue, vlm_min_free_mb=vlm_min_free_mb, vlm_max_queue=vlm_max_queue)
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s

    def ask(self, analysis: ComplexityAnalysis, resources: ResourceState) -> StrategyChoice:
        """The model's validated choice; raises on any failure."""
        facts = {
            "page": {"level": analysis.level, "score": analysis.score, "analyzer": analysis.analyzer,
                     "cues": analysis.contributions, "columns": analysis.features.columns,
                     "has_table": analysis.features.has_table, "snr": analysis.features.snr,
                     "skew_deg": analysis.features.skew_deg, "blank": analysis.features.is_blank,
                     **({"rating": analysis.rating.reason} if analysis.rating else {})},
            "resources": {"vlm_available": resources.vlm_available, "gpu_free_mib": resources.gpu_free_mb,
                          "vlm_queue_depth": resources.queue_depths.get(self.rules["vlm_queue"], 0),
                          "vlm_min_free_mib": self.rules["vlm_min_free_mb"],
                          "vlm_max_queue": self.rules["vlm_max_queue"]},
        }
        params = GenerationParams(model=self.model, max_tokens=self.max_tokens, temperature=0.0,
                                  json_schema=CHOICE_SCHEMA,
                                  messages=[ChatMessage(role="system", content=SYSTEM),
                                            ChatMessage(role="user", content=json.dumps(facts))])
        choice = StrategyChoice.model_validate_json(answer_text(self.generate(params, self.timeout_s),
                                                                f"LLM {self.model!r}"))
        if choice.strategy == "vlm" and not resources.vlm_available:
            raise ValueError("it chose 'vlm' but no VLM is available")
        return choice

    def select(self, analysis: ComplexityAnalysis, resources: ResourceState,
               requested: Requested = "auto") -> StrategyDecision:
        rules = select_strategy(analysis, resources, requested, **self.rules)  # also validates `requested`
        if requested != "auto":
            return rules
        try:
            choice = self.ask(analysis, resources)
        except ValidationError as exc:
            first = exc.errors()[0]
            failure = f"invalid answer: {'.'.join(map(str, first['loc'])) or 'answer'}: {first['msg']}"
        except Exception as exc:  # any failure of the model leaves the decision to the rules
            failure = describe_failure(exc)
        else:
            note = "the rules agree" if choice.strategy == rules.strategy else \
                f"the rules would pick '{rules.strategy}'"
            return StrategyDecision(strategy=choice.strategy, requested=requested, selector=f"llm:{self.model}",
                                    reason=f"LLM {self.model!r}: {choice.reason} ({note})")
        log.warning("LLM strategy selection by %s fell back to the rules: %s", self.model, failure)
        return rules.model_copy(update={"reason": f"LLM selector {self.model!r} failed ({failure}); "
                                                  f"rules: {rules.reason}"})
