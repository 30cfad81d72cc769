"""Contradictions between the optimizer switches (GaLore, APOLLO, BAdam, Adam-mini, Muon, LoRA+) and other keys.

LLaMA-Factory 0.9.5's rules, plus one of ours: two optimizer switches at once are refused (LLaMA-Factory picks
one in a fixed order and ignores the other).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneforge.config.root import TuneforgeConfig

Conflict = tuple[tuple[str, ...], str]

FULL_WEIGHT = ("use_galore", "use_apollo", "use_badam")  # they update the model's own weights, not adapters
SWITCHES = (*FULL_WEIGHT, "use_adam_mini", "use_muon")
# `optim` values each projected optimizer has a version for (the fused torch AdamW maps to the plain one).
OPTIMS = {
    "use_galore": ("adamw_torch", "adamw_torch_fused", "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "adafactor"),
    "use_apollo": ("adamw_torch", "adamw_torch_fused"),
}
LAYERWISE = {"use_galore": "galore_layerwise", "use_apollo": "apollo_layerwise"}


def optimizer_conflicts(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    """Every contradiction of the optimizer switches with each other and with the rest of the config."""
    m = cfg.method
    on = [k for k in SWITCHES if getattr(m, k)]
    both = [*on, "loraplus_lr_ratio"] if m.loraplus_lr_ratio is not None else on
    if len(both) > 1:
        yield tuple(both), "these optimizers replace each other; enable only one."
    full = [k for k in FULL_WEIGHT if getattr(m, k)]
    if full and m.finetuning_type == "lora":
        yield (
            (*full, "finetuning_type"),
            "GaLore, APOLLO and BAdam update the model's own weights, not LoRA adapters: use "
            "`finetuning_type: full` (or freeze).",
        )
    if on and m.stage == "ppo":
        yield (
            (*on, "stage"),
            "tuneforge's PPO loop has its own AdamW; these optimizers apply to stages pt, sft, rm, dpo, kto and grpo.",
        )
    for key in LAYERWISE:
        if getattr(m, key):
            yield from _projected(cfg, key)
    if m.use_badam:
        yield from _badam(cfg)


def _badam(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    m = cfg.method
    if m.badam_mode == "ratio" and not m.badam_update_ratio > 0:
        yield ("badam_update_ratio",), "ratio-mode BAdam updates this share of each weight: give a number above 0."
    if m.badam_mode == "layer" and m.badam_switch_mode == "fixed" and m.badam_start_block is None:
        yield ("badam_switch_mode", "badam_start_block"), "`fixed` trains one block: say which in badam_start_block."
    for key in ("badam_switch_mode", "badam_switch_interval"):
        if m.badam_mode == "layer" and getattr(m, key) is None:
            yield (key,), "layer-mode BAdam needs a value here (defaults: ascending, 50)."


def _projected(cfg: TuneforgeConfig, key: str) -> Iterator[Conflict]:
    t, name = cfg.training, "GaLore" if key == "use_galore" else "APOLLO"
    if t.optim not in OPTIMS[key]:
        yield (key, "optim"), f"{name} has versions of `optim` {', '.join(OPTIMS[key])} only, not `{t.optim}`."
    layerwise = LAYERWISE[key]
    if getattr(cfg.method, layerwise) and t.gradient_accumulation_steps != 1:
        yield (
            (layerwise, "gradient_accumulation_steps"),
            f"layer-wise {name} updates each weight as soon as its gradient is ready, so gradients cannot be "
            "accumulated: set `gradient_accumulation_steps: 1` (raise per_device_train_batch_size instead) "
            f"or turn `{layerwise}` off.",
        )
    if t.deepspeed:
        yield (key, "deepspeed"), f"{name} does not run under DeepSpeed (as in LLaMA-Factory); remove `deepspeed`."
