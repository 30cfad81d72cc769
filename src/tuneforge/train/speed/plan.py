"""Decide and apply the speed paths for one pt/sft run (the sft recipe calls `plan_speed` and `prepare_model`).

Every path keeps the loss and gradients of the plain run (token-weighted loss, attention within each sample):
padding-free collation with varlen attention, micro-batch fusion, token-budget batches and fused kernels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.train.speed import attention, batching, kernels

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)


@dataclass
class SpeedPlan:
    """What the run does beyond the plain recipe."""

    padding_free: bool = False
    fused: int = 1  # samples run as one batch (1: no fusion)
    batch_sampler: Any = None  # token-budget batches, or None
    cuda: bool = False
    notes: list[str] = field(default_factory=list)


def wants_padding_free(cfg: TuneforgeConfig, cuda: bool, fused: int) -> bool:
    """Padding-free batches for neat packing, token budgets and fusion; on CUDA for every pt/sft run whose
    attention is left to tuneforge (`flash_attn: auto`)."""
    if cfg.method.stage not in ("pt", "sft") or cfg.model.mixture_of_depths:  # MoD routes within padded rows
        return False
    if cfg.data.neat_packing or cfg.training.max_tokens_per_batch or fused > 1:
        return True
    return cuda and cfg.model.flash_attn == "auto"


def plan_speed(cfg: TuneforgeConfig, args: Any, data: Any, cuda: bool) -> SpeedPlan:
    """Fuse micro-batches into `args`, switch `data.collator` to padding-free batches and build token-budget
    batches where the config and machine call for them (in place); returns the plan for `prepare_model`."""
    from tuneforge.data.collate import PaddingCollator, PaddingFreeCollator

    fused = batching.fusion_factor(cfg, cuda)
    plan = SpeedPlan(padding_free=wants_padding_free(cfg, cuda, fused), fused=fused, cuda=cuda)
    if plan.padding_free and isinstance(data.collator, PaddingCollator):
        data.collator = PaddingFreeCollator()
    if fused > 1:
        steps = args.gradient_accumulation_steps
        batching.fuse_args(args, fused)
        plan.notes.append(f"Fused {steps} micro-batches into one padding-free batch of {fused} samples per step.")
    budget = cfg.training.max_tokens_per_batch
    if budget:
        shuffle = not cfg.training.disable_shuffling
        lengths = batching.sample_lengths(data.train)
        plan.batch_sampler = batching.TokenBudgetBatchSampler(lengths, budget, seed=args.seed, shuffle=shuffle)
        plan.notes.append(f"Token-budget batches: {len(plan.batch_sampler)} batches of at most {budget} tokens.")
    for note in plan.notes:
        logger.info(note)
    return plan


def prepare_model(model: Any, cfg: TuneforgeConfig, plan: SpeedPlan) -> None:
    """Varlen attention for padding-free batches and fused kernels, on the base model before adapters."""
    current = model.config._attn_implementation
    chosen = attention.choose_implementation(cfg.model.flash_attn, current, plan.padding_free, plan.cuda)
    if chosen != current:
        model.set_attn_implementation(chosen)
        logger.info("Attention: %s (padding-free batches)", chosen)
    if frozen_base_in_bf16(cfg, plan.cuda):
        model.to(torch.bfloat16)  # frozen LoRA base: no fp32 master needed; adapters are upcast after PEFT
    vocab = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else 0
    mode = kernels.resolve_kernels(cfg, plan.cuda, model.config.model_type, vocab)
    kernels.apply_kernels(model, mode)


def frozen_base_in_bf16(cfg: TuneforgeConfig, cuda: bool) -> bool:
    """LoRA with bf16 mixed precision on CUDA: keep the frozen base weights in bf16 (half the memory, no per-step
    fp32 -> bf16 weight casts under autocast); the trainable adapter weights stay float32 masters."""
    m, q = cfg.method, cfg.quantization
    mixed = cfg.training.bf16 and not m.pure_bf16 and not cfg.model.upcast_layernorm
    return cuda and mixed and m.finetuning_type == "lora" and q.quantization_bit is None
