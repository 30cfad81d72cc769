"""Helpers for the export tests: LoRA adapters trained a few steps with PEFT, export configs, base+adapter models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Conversations the GGUF checks render: one turn, and a multi-turn one with a system prompt.
CHATS = [
    [{"role": "user", "content": "Hello there"}],
    [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Sky color?"},
        {"role": "assistant", "content": "Blue"},
        {"role": "user", "content": "Grass?"},
    ],
]


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
    ids = torch.randint(0, 1000, (2, 16))
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


def shrink_vocab(src: Path, out: Path, keep: int = 3000) -> Path:
    """A copy of the tiny model at `src` keeping its first `keep` BPE tokens and its special tokens (renumbered
    after them), with the matching embedding rows: the same architecture with a vocabulary small enough for
    GGUF readers and llama.cpp to load in a blink."""
    import json
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    data = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    bpe = data["model"]
    vocab = {token: i for token, i in bpe["vocab"].items() if i < keep}
    pairs = [m if isinstance(m, list) else m.split(" ") for m in bpe["merges"]]
    bpe["merges"] = [p for p in pairs if p[0] in vocab and p[1] in vocab and p[0] + p[1] in vocab]
    bpe["vocab"] = vocab
    old_ids = list(range(keep))
    for n, added in enumerate(data["added_tokens"]):
        old_ids.append(added["id"])
        added["id"] = keep + n
    new_id = {old: new for new, old in enumerate(old_ids)}
    _remap_ids(data.get("post_processor"), new_id)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    rows = model.get_input_embeddings().weight.data[old_ids].clone()
    model.resize_token_embeddings(len(old_ids))
    model.get_input_embeddings().weight.data.copy_(rows)
    for config in (model.config, model.generation_config):
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(config, key, None)
            if value is not None:
                setattr(config, key, [new_id[v] for v in value] if isinstance(value, list) else new_id[value])
    model.save_pretrained(out)
    return out


def _remap_ids(node: Any, new_id: dict[int, int]) -> None:
    """Renumber the token ids a tokenizer.json post-processor adds (e.g. Llama's begin-of-text)."""
    if isinstance(node, dict):
        if isinstance(node.get("ids"), list):
            node["ids"] = [new_id[i] for i in node["ids"]]
        for value in node.values():
            _remap_ids(value, new_id)
    elif isinstance(node, list):
        for value in node:
            _remap_ids(value, new_id)
