"""LoRA on mixture-of-experts expert weights, which transformers 5 stores fused (one 3-D tensor per projection).

Routed experts are not `nn.Linear` layers, so `lora_target: all` (every linear layer, as in LLaMA-Factory) adapts
attention, shared experts and dense MLPs but not them. Naming them adapts them through PEFT's `target_parameters`:
`experts` adapts every fused weight of the `experts` modules, `experts.gate_up_proj` just that one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tuneforge.errors import TuneforgeError

logger = logging.getLogger(__name__)


def expert_weights(model: Any) -> dict[str, list[str]]:
    """Fused expert weights by module leaf name, e.g. {"experts": ["experts.down_proj", "experts.gate_up_proj"]}."""
    found: dict[str, set[str]] = {}
    for full_name, param in model.named_parameters():
        parts = full_name.split(".")
        if param.ndim == 3 and len(parts) >= 2 and "lora" not in full_name:
            found.setdefault(parts[-2], set()).add(".".join(parts[-2:]))
    return {leaf: sorted(names) for leaf, names in found.items()}


def split_expert_targets(model: Any, targets: list[str]) -> tuple[list[str], list[str]]:
    """(module targets, parameter targets): `experts` and `experts.<weight>` become parameter targets."""
    weights = expert_weights(model)
    every = {name for names in weights.values() for name in names}
    modules: list[str] = []
    parameters: list[str] = []
    for target in targets:
        if target in weights:
            parameters.extend(weights[target])
        elif target in every:
            parameters.append(target)
        else:
            modules.append(target)
    return modules, sorted(set(parameters))


def expert_hint(model: Any, missing: list[str]) -> str:
    """What to write instead of a bare expert weight name (`gate_up_proj`), or "" when none is one."""
    every = [name for names in expert_weights(model).values() for name in names]
    if not every:
        return ""
    named = [name for name in every if name.split(".")[-1] in missing]
    example = named[0] if named else every[0]
    return (
        f" Routed experts are fused weights here ({', '.join(every)}): name them as `{example}`, or "
        f"`{example.split('.')[0]}` for all of them."
    )


def warn_unadapted(peft_model: Any, requested: set[str]) -> None:
    """Warn about requested linear layers PEFT left out.

    Recent PEFT (0.21; 0.18 did not) reads `gate_proj` / `up_proj` / `down_proj` on MoE types whose experts transformers
    fuses when loading older checkpoints (Qwen3-MoE, DeepSeek-V3, GLM-4-MoE, ...) as the routed experts' fused
    weights: it adapts those and drops the names from its module targets, so dense and shared-expert MLP layers
    with those names get no adapter.
    """
    tuner = peft_model.base_model
    names = set(getattr(tuner, "targeted_module_names", ()))
    adapted = names | {name.split(".")[-1] for name in names}  # vision-language models request full names
    skipped = sorted(requested - adapted)
    if not skipped:
        return
    experts = sorted({".".join(n.split(".")[-2:]) for n in getattr(tuner, "targeted_parameter_names", ())})
    logger.warning(
        "LoRA: PEFT adapted no layer named %s; for this model type it maps those names onto the routed experts' "
        "fused weights (%s), so dense and shared-expert MLP layers of those names stay frozen.",
        ", ".join(skipped),
        ", ".join(experts) or "none",
    )


@contextmanager
def explain_fused_targets() -> Iterator[None]:
    """Turn PEFT's error for half of a fused expert pair (`gate_proj` without `up_proj`) into a user error."""
    try:
        yield
    except ValueError as exc:
        if not str(exc).startswith("Cannot convert PEFT target"):
            raise
        raise TuneforgeError(
            f"`lora_target`: {exc} On this model PEFT reads these MLP names as the routed experts' fused weights: "
            "name gate_proj and up_proj together, or use `experts`."
        ) from exc
