"""Builds a tiny random-weight Qwen2 model and tokenizer locally, so the system runs with no hub access.

Its answers are meaningless; it is there for tests, demos and benchmarks of the machinery around the model.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_WORDS = ("the page text model queue worker engine token stream redis job document scan line column table "
          "image result fast slow batch request answer question hello world invoice letter report chapter "
          "number date name address total price item order receipt contract section paragraph").split()


def _corpus(n_lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ","]) + f" {rng.randint(0, 9999)}")
    return lines


def train_byte_bpe(vocab_size: int, special_tokens: list[str], seed: int):
    """A byte-level BPE `tokenizers.Tokenizer` trained on a small random English-like corpus; the special tokens
    get the first ids, in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(4000, seed), trainer=trainer)
    return tok


def build_demo_model(dest: str | Path, *, vocab_size: int = 2048, hidden_size: int = 128, layers: int = 2,
                     max_position_embeddings: int = 4096, seed: int = 0) -> Path:
    """Write tokenizer + config + weights to `dest` (skipped when already there). Takes a few seconds."""
    dest = Path(dest)
    if (dest / "config.json").exists() and (dest / "model.safetensors").exists():
        return dest
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    dest.mkdir(parents=True, exist_ok=True)
    tok = train_byte_bpe(vocab_size, SPECIAL_TOKENS, seed)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(dest)

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
                         eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"), bos_token_id=None,
                         torch_dtype="bfloat16")
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)
    (dest / "generation_config.json").write_text(json.dumps({"eos_token_id": config.eos_token_id}))
    (dest / "MAOOCR_DEMO_MODEL").write_text("random weights: answers are meaningless\n")
    return dest


def is_demo_model(path: str | Path) -> bool:
    return (Path(path) / "MAOOCR_DEMO_MODEL").exists()
