"""Helpers for the export tests: LoRA adapters trained a few steps with PEFT, export configs, base+adapter models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train_lora(base: Path, out: Path, seed: int, steps: int = 4) -> Path:
    """A LoRA adapter on `base`, randomly initialised (non-zero B) then trained `steps` steps on random tokens."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 5000, (2, 16))
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


def export_cfg(base: Path, export_dir: Path, adapters: list[Path] | None = None, **keys: Any) -> Any:
    """A validated config exporting `base` (+ adapters) to `export_dir` with the qwen template in float32."""
    from tuneforge.config import load_config

    values: dict[str, Any] = {
        "model_name_or_path": str(base),
        "template": "qwen",
        "export_dir": str(export_dir),
        "infer_dtype": "float32",
    }
    if adapters:
        values["adapter_name_or_path"] = ",".join(str(a) for a in adapters)
    values.update(keys)
    return load_config(values)


def base_with_adapters(base: Path, adapters: list[Path]) -> Any:
    """The base model with adapters applied through PEFT (the first ones merged, the last one live)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    for path in adapters[:-1]:
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    return PeftModel.from_pretrained(model, adapters[-1]).eval()
