"""The vLLM implementation of `LLMEngine`: one resident AsyncLLM serving many concurrent requests."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import AsyncIterator

from maoocr.config import ModelConfig
from maoocr.engines.base import ChoiceDelta, EngineStep, LLMEngine, ModelInfo
from maoocr.engines.memory import EngineSettings
from maoocr.errors import ContextLengthExceeded, EngineError, InvalidRequest
from maoocr.protocol.generation import GenerationParams, Usage

log = logging.getLogger(__name__)


def prepare_vllm_environment(device: str, scratch_dir: str | None = None) -> None:
    """Environment vLLM reads at import time. Must run before `import vllm`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    if device == "cpu":
        # Small KV cache and no separate engine-core process: fast start and a modest footprint on CPUs.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if scratch_dir:
        os.makedirs(scratch_dir, exist_ok=True)
        os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(scratch_dir, "vllm-cache"))
        # IPC socket paths are capped at 107 characters: keep them in a short directory of our own.
        os.environ.setdefault("VLLM_RPC_BASE_PATH", tempfile.mkdtemp(prefix="maoocr-rpc-", dir="/tmp"))


class VLLMEngine(LLMEngine):
    def __init__(self, name: str, model: ModelConfig, model_path: str, settings: EngineSettings) -> None:
        self.name = name
        self.model = model
        self.model_path = model_path
        self.settings = settings
        self._engine = None
        self._tokenizer = None

    async def start(self) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = dict(model=self.model_path, tokenizer=self.model.tokenizer or self.model_path,
                      max_model_len=self.model.max_model_len, max_num_seqs=self.settings.max_num_seqs,
                      tensor_parallel_size=self.settings.tensor_parallel_size,
                      quantization=self.settings.quantization, dtype=self.model.dtype,
                      load_format=self.model.load_format, enforce_eager=self.settings.enforce_eager,
                      trust_remote_code=self.model.trust_remote_code, disable_log_stats=True)
        if self.settings.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = self.settings.gpu_memory_utilization
        log.info("loading engine %s from %s with %s", self.name, self.model_path, self.settings.model_dump())
        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self._tokenizer = self._engine.get_tokenizer()

    def _prompt_ids(self, params: GenerationParams) -> list[int]:
        tok = self._tokenizer
        if params.messages is not None:
            messages = [m.model_dump(exclude_none=True) for m in params.messages]
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception as exc:  # the model's own template rejected these messages
                raise InvalidRequest(f"cannot apply the chat template of model {self.name!r}: {exc}") from exc
            # The template already wrote the special tokens as text; don't let the tokenizer add more.
            return list(tok.encode(text, add_special_tokens=False))
        return list(tok.encode(params.prompt))

    async def generate(self, params: GenerationParams, request_id: str) -> AsyncIterator[EngineStep]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        assert self._engine is not None, "engine not started"
        prompt_ids = self._prompt_ids(params)
        limit = self.model.max_model_len
        if len(prompt_ids) + params.max_tokens > limit:
            raise ContextLengthExceeded(
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the model's "
                f"context of {limit} tokens")
        sampling = SamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                                  max_tokens=params.max_tokens, stop=params.stop or None, seed=params.seed,
                                  ignore_eos=params.ignore_eos, output_kind=RequestOutputKind.DELTA)
        completion_tokens = 0
        try:
            async for out in self._engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), sampling, request_id):
                deltas = []
                for choice in out.outputs:
                    completion_tokens += len(choice.token_ids)
                    deltas.append(ChoiceDelta(index=choice.index, text=choice.text,
                                              token_count=len(choice.token_ids), finish_reason=choice.finish_reason))
                usage = None
                if out.finished:
                    usage = Usage(prompt_tokens=len(prompt_ids), completion_tokens=completion_tokens,
                                  total_tokens=len(prompt_ids) + completion_tokens)
                yield EngineStep(deltas=deltas, finished=out.finished, usage=usage)
        except ValueError as exc:  # vLLM's own validation of the request
            raise InvalidRequest(str(exc)) from exc
        except Exception as exc:
            if type(exc).__name__ in ("EngineDeadError", "EngineGenerateError"):
                cause = exc.__cause__ or exc
                raise EngineError(f"engine failed the request: {type(cause).__name__}: {cause}") from exc
            raise

    async def abort(self, request_id: str) -> None:
        if self._engine is not None:
            await self._engine.abort(request_id)

    def load(self) -> dict[str, int]:
        if self._engine is None:
            return {"running": 0, "waiting": 0}
        # vLLM ≥ 0.32 has it on AsyncLLM; 0.25 only on its output processor.
        count = getattr(self._engine, "get_num_unfinished_requests", None)
        if count is None:
            count = self._engine.output_processor.get_num_unfinished_requests
        return {"running": count(), "waiting": 0}

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, model_path=self.model_path, model_type=self.model.model_type,
                         max_model_len=self.model.max_model_len, max_num_seqs=self.settings.max_num_seqs,
                         device=self.settings.device, engine="vllm", settings=self.settings.model_dump())

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
