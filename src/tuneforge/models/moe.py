"""Mixture-of-experts router auxiliary (load-balancing) loss, switched on as LLaMA-Factory 0.9.5 does.

When training with `moe_aux_loss_coef` set (and non-zero), the model config asks the model to return its router
logits (`output_router_logits`), so transformers adds `coef * load-balancing loss` to the language-model loss, and
the coefficient goes to the config key the architecture reads. Both follow LLaMA-Factory's per-model-type tables
below; on any other model type the setting has no effect and a warning says so. At inference nothing changes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig

logger = logging.getLogger(__name__)

# Model types whose router logits LLaMA-Factory turns on for training
ROUTER_LOGITS_TYPES = frozenset(
    {
        "dbrx",
        "ernie4_5_moe",
        "granitemoe",
        "jamba",
        "jetmoe",
        "llama4",
        "mixtral",
        "olmoe",
        "phimoe",
        "qwen2_moe",
        "qwen3_moe",
    }
)
# Where each model type reads the coefficient from (dbrx keeps its own `ffn_config.moe_loss_weight`)
COEF_KEYS: dict[str, str] = {
    **{t: "router_aux_loss_coef" for t in ROUTER_LOGITS_TYPES - {"dbrx", "jetmoe"}},
    "deepseek": "aux_loss_alpha",
    "jetmoe": "aux_loss_coef",
}
# Multimodal models whose text config is one of these get the same treatment there
TEXT_CONFIG_LOGITS_TYPES = frozenset({"glm4v_moe_text", "qwen3_moe"})
TEXT_CONFIG_COEF_TYPES = frozenset({"qwen3_moe"})


def configure_router_loss(config: PretrainedConfig, coef: float | None, *, trainable: bool) -> bool:
    """Turn the router auxiliary loss on in `config` for training with weight `coef`; True if anything was set.

    Nothing happens at inference or when `coef` is unset or 0 (the model config's own values stay).
    """
    if not trainable or not coef:
        return False
    model_type = getattr(config, "model_type", None)
    text = getattr(config, "text_config", None)
    text_type = getattr(text, "model_type", None)
    acted = False
    if model_type in ROUTER_LOGITS_TYPES:
        config.output_router_logits = acted = True
    if text is not None and text_type in TEXT_CONFIG_LOGITS_TYPES:
        text.output_router_logits = acted = True
    if model_type in COEF_KEYS:
        setattr(config, COEF_KEYS[model_type], coef)
        acted = True
    elif text is not None and text_type in TEXT_CONFIG_COEF_TYPES:
        text.router_aux_loss_coef = coef
        acted = True
    if not acted:
        logger.warning(
            "`moe_aux_loss_coef: %s` has no effect on model type %r: the router auxiliary loss is switched on for "
            "%s only (as in LLaMA-Factory).",
            coef,
            model_type,
            ", ".join(sorted(ROUTER_LOGITS_TYPES | set(COEF_KEYS))),
        )
    return acted
