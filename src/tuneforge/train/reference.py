"""The reference model of the preference and RL stages (dpo, kto, ppo, grpo) and its no-grad logits.

`ref_model` if set; otherwise the base model: free with LoRA (the policy with its adapter disabled), a frozen copy
otherwise.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.models.loader import load_model

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)


def load_frozen(
    cfg: TuneforgeConfig, tokenizer: Any, path: str, adapters: list[str], bits: int | None
) -> torch.nn.Module:
    """A frozen eval-mode causal LM: `path` (+ merged `adapters`), optionally quantized to `bits`."""
    from tuneforge.infer.loading import apply_adapters

    model_section = cfg.model.model_copy(update={"model_name_or_path": path, "adapter_name_or_path": None})
    quant = cfg.quantization.model_copy(update={"quantization_bit": bits})
    sub = cfg.model_copy(update={"model": model_section, "quantization": quant})
    model = load_model(sub, tokenizer, trainable=False)
    model = apply_adapters(model, adapters, keep_last=bits is not None)
    model.requires_grad_(False)
    return model.eval()


def load_reference(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> torch.nn.Module | None:
    """The reference model: `ref_model` if set; None for LoRA (the policy with its adapter disabled); else a
    frozen copy of the base model."""
    r = cfg.rlhf
    if r.ref_model:
        logger.info("Reference model: %s", r.ref_model)
        return load_frozen(cfg, tokenizer, r.ref_model, r.ref_adapters, r.ref_model_quantization_bit)
    if hasattr(model, "disable_adapter"):
        logger.info("Reference model: the base model (the policy with its adapter disabled)")
        return None
    logger.info("Reference model: a frozen copy of %s", cfg.model.model_name_or_path)
    adapters = cfg.model.adapters
    return load_frozen(cfg, tokenizer, cfg.model.model_name_or_path, adapters, r.ref_model_quantization_bit)


def reference_logits(model: Any, ref: Any, **inputs: Any) -> torch.Tensor:
    """Logits of the reference for `inputs`, without gradients (the policy with adapters off when `ref` is None)."""
    with torch.no_grad():
        if ref is not None:
            device = inputs["input_ids"].device
            if next(ref.parameters()).device != device and not getattr(ref, "is_quantized", False):
                ref.to(device)
            return ref(**inputs).logits
        policy = getattr(model, "module", model)
        with policy.disable_adapter():
            return policy(**inputs).logits


NOT_MODEL_INPUTS = ("labels", "kto_tags")


def forward_inputs(batch: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The model's inputs in a preference batch: `input_ids`, `attention_mask` and any media inputs (pixel values,
    image grids, per-token media types) for the rows of `prefix` ("", or "kl_" for KTO's mismatched completions,
    whose own `kl_` entries replace the shared ones)."""
    shared = {k: v for k, v in batch.items() if not k.startswith("kl_") and k not in NOT_MODEL_INPUTS}
    if not prefix:
        return shared
    own = {k[len(prefix) :]: v for k, v in batch.items() if k.startswith(prefix)}
    return shared | {k: v for k, v in own.items() if k not in NOT_MODEL_INPUTS}
