"""LLaMA Pro block expansion (`tuneforge expand-layers`): insert copies of decoder blocks that start as identities.

After every `num_layers / num_expand` original blocks a copy of the last one is inserted with its attention output
(`o_proj`) and MLP output (`down_proj`) projections zeroed, so the block adds nothing to the residual stream and
the expanded model computes exactly what the original did. Training with `use_llama_pro: true` and
`freeze_trainable_layers: num_expand` then updates only the inserted blocks.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

logger = logging.getLogger(__name__)

OUTPUT_PROJECTIONS = ("o_proj", "down_proj")  # attention and MLP (dense or experts) outputs into the residual
TOKENIZER_FILES = (
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template*",
    "*.model",
    "*.tiktoken",
)


def expanded_layer_ids(num_layers: int, num_trainable: int) -> list[int]:
    """Indices of the expanded blocks in a model of `num_layers` blocks with `num_trainable` of them expanded:
    the last block of each of `num_trainable` equal strides (LLaMA-Factory's choice for `use_llama_pro`)."""
    if num_trainable <= 0 or num_layers % num_trainable:
        raise TuneforgeError(
            f"LLaMA Pro: the model's {num_layers} layers must split into `freeze_trainable_layers` "
            f"({num_trainable}) equal strides; set it to the `num_expand` the model was expanded with."
        )
    stride = num_layers // num_trainable
    return list(range(stride - 1, num_layers, stride))


def _decoder_layers(model: Any) -> Any:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise TuneforgeError(
            f"expand-layers needs a decoder-only model with `model.layers` (llama, mistral, qwen2, qwen3, ...); "
            f"{type(model).__name__} has none."
        )
    return layers


def identity_block(layer: Any) -> Any:
    """A copy of a decoder block whose output projections are zero: it passes the residual stream unchanged."""
    import torch

    block = copy.deepcopy(layer)
    zeroed = set()
    with torch.no_grad():
        for name, param in block.named_parameters():
            hit = next((p for p in OUTPUT_PROJECTIONS if p in name.split(".")), None)
            if hit:
                param.zero_()
                zeroed.add(hit)
    if zeroed != set(OUTPUT_PROJECTIONS):
        names = ", ".join(n for n, _ in layer.named_parameters())
        raise TuneforgeError(
            f"expand-layers needs decoder blocks with `o_proj` and `down_proj` output projections; this model's "
            f"blocks have: {names}."
        )
    return block


def expand_model(model: Any, num_expand: int) -> list[int]:
    """Insert `num_expand` identity blocks into a loaded model in place; returns the new blocks' indices."""
    from torch import nn

    layers = _decoder_layers(model)
    config = model.config
    num_layers = len(layers)
    if num_expand <= 0 or num_layers % num_expand:
        raise TuneforgeError(
            f"`--num-expand {num_expand}`: the model has {num_layers} layers; choose a positive divisor of it."
        )
    split = num_layers // num_expand
    blocks, types, added = [], [], []
    layer_types = getattr(config, "layer_types", None)
    for i, layer in enumerate(layers):
        copies = [layer, identity_block(layer)] if (i + 1) % split == 0 else [layer]
        for block in copies:
            if block is not layer:
                added.append(len(blocks))
            blocks.append(block)
            types.append(layer_types[i] if layer_types else None)
    for index, block in enumerate(blocks):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index  # the KV cache is indexed by layer
    model.model.layers = nn.ModuleList(blocks)
    config.num_hidden_layers = len(blocks)
    if layer_types:
        config.layer_types = types
    return added


def _copy_tokenizer(model_path: str, out: Path) -> None:
    """The tokenizer files beside the weights: copied from a local folder, saved again from a hub id."""
    from transformers import AutoTokenizer

    source = Path(model_path)
    if source.is_dir():
        for pattern in TOKENIZER_FILES:
            for file in source.glob(pattern):
                shutil.copy2(file, out / file.name)
        return
    try:
        AutoTokenizer.from_pretrained(model_path).save_pretrained(out)
    except (OSError, ValueError) as err:  # weights without a tokenizer: the user brings one
        logger.warning("No tokenizer saved with the expanded model: %s", err)


def expand_layers(model_path: str, out_dir: str | Path, num_expand: int, overwrite: bool = False) -> Path:
    """Write `model_path` expanded by `num_expand` identity blocks (weights, config, tokenizer) to `out_dir`."""
    from transformers import AutoModelForCausalLM

    from tuneforge.models.tiny import prepare_out_dir

    out = prepare_out_dir(out_dir, overwrite)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
    added = expand_model(model, num_expand)
    model.save_pretrained(out)
    _copy_tokenizer(model_path, out)
    print(f"Expanded {model_path} to {len(_decoder_layers(model))} layers; new identity blocks: {added}.")
    print(f"Fine-tune it with:\n  model_name_or_path: {out}\n  finetuning_type: freeze")
    print(f"  freeze_trainable_layers: {num_expand}\n  use_llama_pro: true")
    return out
