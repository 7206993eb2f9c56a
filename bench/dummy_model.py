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
    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t2"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="t0", eos_token="t1", unk_token="t2")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(dest)
    return dest


def word_prompts(count: int, words: int) -> list[str]:
    """Distinct prompts of exactly `words` tokens for the WordLevel tokenizer (ids above the special ones)."""
    return [" ".join(f"t{100 + (i * 131 + j * 7) % 50_000}" for j in range(words)) for i in range(count)]
