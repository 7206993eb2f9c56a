"""Real architectures with dummy weights, for throughput work where no weights can be downloaded.

Writes a model directory with a real config (Qwen2.5-0.5B or -7B sizes) and a WordLevel tokenizer with one
token per id (`t0` … `tN`), so every id decodes and a prompt of N words is exactly N tokens. Serve it with
`load_format: dummy` (vLLM makes random weights from config.json alone).
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN25 = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, tie_word_embeddings=False),
}
VOCAB = 151_936


def build_dummy_model(dest: str | Path, size: str = "0.5b") -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": VOCAB,
              "max_position_embeddings": 32768, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
              "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 1,
              "use_sliding_window": False, **QWEN25[size]}
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    # Specials must not be prefixes of the word tokens ("t1" would split "t100"), so they get their own names.
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{f"t{i}": i for i in range(3, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    # In its own folder (the model's `tokenizer` setting): beside config.json, transformers 5 would load
    # Qwen2's own tokenizer class and ignore this WordLevel model.
    fast.save_pretrained(tokenizer_dir(dest))
    return dest


def tokenizer_dir(model_dir: str | Path) -> Path:
    return Path(model_dir) / "tokenizer"


def word_prompts(count: int, words: int, first: int = 0) -> list[str]:
    """Distinct prompts (numbers `first` … `first + count - 1`; no two share a first token) of exactly `words`
    tokens for the WordLevel tokenizer (ids above the special ones)."""
    return [" ".join(f"t{100 + (i * 131 + j * 7) % 50_000}" for j in range(words))
            for i in range(first, first + count)]
