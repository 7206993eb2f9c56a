"""A LoRA adapter for the tiny demo model, written in PEFT's on-disk format (what `peft`'s `save_pretrained`
writes: adapter_config.json and adapter_model.safetensors), with weights large enough that greedy answers change."""

from __future__ import annotations

import json
from pathlib import Path

# The demo model's linear layers (maoocr.engines.demo_model: Qwen2, hidden 128, 4 heads of 32, 2 KV heads).
_TARGETS = {"self_attn.q_proj": (128, 128), "self_attn.k_proj": (128, 64), "self_attn.v_proj": (128, 64),
            "self_attn.o_proj": (128, 128), "mlp.gate_proj": (128, 256), "mlp.up_proj": (128, 256),
            "mlp.down_proj": (256, 128)}


def build_demo_adapter(base: Path, dest: Path, *, rank: int = 8, seed: int = 1, layers: int = 2) -> Path:
    """An adapter of `rank` on every linear layer of the demo model at `base`; `seed` makes adapters differ."""
    import torch
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for module, (fan_in, fan_out) in _TARGETS.items():
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            # PEFT starts lora_B at zero (no effect until trained); random here, so the adapter visibly acts.
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, fan_in, generator=generator) * 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(fan_out, rank, generator=generator) * 0.5
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()},
              str(dest / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base), "r": rank,
              "lora_alpha": 2 * rank, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
              "target_modules": sorted(module.split(".")[1] for module in _TARGETS), "modules_to_save": None,
              "use_rslora": False, "use_dora": False, "inference_mode": True}
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return dest


def build_broken_adapter(dest: Path) -> Path:
    """A folder that looks like an adapter but whose weights are not a safetensors file."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                                          "target_modules": ["q_proj"], "bias": "none"}))
    (dest / "adapter_model.safetensors").write_bytes(b"these are not tensors")
    return dest
