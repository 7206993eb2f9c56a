"""Builds a tiny random-weight vision-language model (Qwen2-VL architecture) locally, with no hub access.

The model directory holds everything vLLM (and transformers) need to serve it with image inputs:
`config.json` (`Qwen2VLForConditionalGeneration`), a byte-level BPE tokenizer that carries the Qwen2-VL
special tokens at the ids the config names, `preprocessor_config.json` (a `Qwen2VLImageProcessor` with a
small pixel budget), a chat template that writes `<|vision_start|><|image_pad|><|vision_end|>` for an image
part, and bf16 safetensors weights (~2 MB). Its answers are meaningless; it exists for tests, demos and
benchmarks of the machinery around a multimodal model.

Prompt format: one image is written as the three tokens IMAGE_PLACEHOLDER
(`<|vision_start|><|image_pad|><|vision_end|>`); vLLM's multimodal processor expands the single
`<|image_pad|>` into one token per 2x2 block of 14x14 patches of the resized image (4..64 tokens here),
both when the prompt is text and when it is token ids (`TokensPrompt`) with `multi_modal_data`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from maoocr.engines.demo_model import _corpus

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
# Order fixes the ids: the trainer gives special tokens the first ids, in this order.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's template, trimmed: an image part (`image`, `image_url` or anything with an `image` key) becomes
# the image placeholder, a text part its text. Content may also be a plain string.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' or p['type'] == 'image_url' or p['type'] == 'image_pil' or 'image' in p %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif p['type'] == 'video' or 'video' in p %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PATCH_SIZE = 14
MERGE_SIZE = 2
MIN_PIXELS = 28 * 28 * 4      # at least 4 image tokens
MAX_PIXELS = 28 * 28 * 64     # at most 64 image tokens


def build_demo_vlm(dest: str | Path, *, vocab_size: int = 2048, hidden_size: int = 128, layers: int = 2,
                   vision_depth: int = 2, vision_embed_dim: int = 64, min_pixels: int = MIN_PIXELS,
                   max_pixels: int = MAX_PIXELS, max_position_embeddings: int = 4096, seed: int = 0) -> Path:
    """Write a tiny Qwen2-VL model to `dest` (skipped when already there) and return `dest`. Takes seconds."""
    dest = Path(dest)
    if (dest / "config.json").exists() and (dest / "model.safetensors").exists():
        return dest
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    dest.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(4000, seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None,
                                   additional_special_tokens=SPECIAL_TOKENS[3:])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(dest)
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(SPECIAL_TOKENS), ids

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=PATCH_SIZE, temporal_patch_size=2,
        merge_size=MERGE_SIZE, size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    image_processor.save_pretrained(dest)
    _write_processor_files(dest)

    head_dim = hidden_size // 4
    text_config = dict(vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=max_position_embeddings, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                        "mrope_section": _mrope_section(head_dim)},
                       eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                       bos_token_id=ids["<|endoftext|>"], tie_word_embeddings=True, dtype="bfloat16")
    vision_config = dict(depth=vision_depth, embed_dim=vision_embed_dim, hidden_size=hidden_size,
                         num_heads=2, mlp_ratio=2, in_channels=3, patch_size=PATCH_SIZE,
                         spatial_merge_size=MERGE_SIZE, temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text_config, vision_config=vision_config,
                           image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                           tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)
    (dest / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}))
    (dest / "MAOOCR_DEMO_MODEL").write_text("random weights: answers are meaningless\n")
    return dest


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (temporal, height, width) like Qwen2-VL's [16, 24, 24]."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _write_processor_files(dest: Path) -> None:
    """processor_config.json: lets AutoProcessor build a Qwen2VLProcessor (image part only; no video)."""
    (dest / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2VLProcessor"}, indent=2))
