"""Stages pt and sft: the causal-LM loss of the Trainer (or DFT / EAFT / ASFT), padded (or, for neat packing,
padding-free) batches, the pt/sft speed paths and FP8, PiSSA conversion, and next-token accuracy on the evaluation
data when `compute_accuracy`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.data.collate import PaddingCollator, PaddingFreeCollator
from tuneforge.models.adapters import pissa_callbacks
from tuneforge.train.recipe import StagePlan, StageSpec, TrainData, pad_multiple, run_stage
from tuneforge.train.sft_losses import sft_loss_func
from tuneforge.train.trainer import logits_to_predictions, token_accuracy

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

__all__ = ["SFT", "TrainData", "run_sft"]


def sft_collator(cfg: TuneforgeConfig, tokenizer: Any) -> PaddingCollator | PaddingFreeCollator:
    """Neat-packed rows (position ids restarting per sample) are collated padding-free into one row without an
    attention mask, so attention stays within each sample (varlen kernels on GPU, a block-diagonal mask on sdpa)."""
    if cfg.data.neat_packing:
        return PaddingFreeCollator()
    return PaddingCollator(tokenizer.pad_token_id, pad_to_multiple_of=pad_multiple())


def sft_plan(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> StagePlan:
    """The Trainer's own loss (DFT / EAFT / ASFT when switched on), PiSSA conversion, token accuracy on the
    evaluation data when `compute_accuracy`."""
    accuracy = cfg.training.compute_accuracy
    return StagePlan(
        callbacks=pissa_callbacks(cfg),
        compute_metrics=token_accuracy if accuracy else None,
        preprocess_logits=logits_to_predictions if accuracy else None,
        compute_loss_func=sft_loss_func(cfg, model, tokenizer),
    )


SFT = StageSpec(collator=sft_collator, plan=sft_plan, speed=True, model_columns_only=True)


def run_sft(cfg: TuneforgeConfig, data: TrainData | None = None, tokenizer: Any = None) -> dict[str, Any]:
    """Train stage pt or sft as `cfg` says; `data` / `tokenizer` replace the pipeline's (tests pass hand-made ones)."""
    return run_stage(cfg, SFT, tokenizer, data)
