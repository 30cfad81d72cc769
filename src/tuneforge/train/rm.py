"""Stage rm: a reward model = the causal LM's last hidden state through a value head, trained on preference pairs.

Loss: -log sigmoid(r_chosen - r_rejected), the score taken at each sequence's last token. Saved as the adapter
(or full model) plus `value_head.safetensors`, which `tuneforge api` serves at `/v1/score/evaluation` and PPO/GRPO
use as `reward_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from tuneforge.data.collate import PairwiseCollator
from tuneforge.infer.loading import VALUE_HEAD_FILE
from tuneforge.train.losses import pairwise_reward_loss
from tuneforge.train.recipe import MetricStore, SaveModel, StagePlan, StageSpec, pad_multiple, run_stage
from tuneforge.train.value_head import (
    attach_value_head,
    detach_value_head,
    last_token_values,
    load_value_head_state,
    save_value_head,
)

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


class RewardLoss:
    """Pairwise loss on a batch of B chosen rows followed by B rejected rows; records reward metrics."""

    def __init__(self, metrics: MetricStore) -> None:
        self.metrics = metrics

    def __call__(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        scores = last_token_values(model, batch["input_ids"], batch["attention_mask"])
        chosen, rejected = scores.float().chunk(2)
        loss = pairwise_reward_loss(chosen, rejected)
        self.metrics.add(reward_metrics(chosen, rejected), training=model.training)
        return loss


def reward_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean chosen/rejected rewards, their margin and how often the chosen one scores higher."""
    chosen, rejected = chosen.detach(), rejected.detach()
    return {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).float().mean(),
    }


class ValueHeadCheckpoint(TrainerCallback):
    """Write `value_head.safetensors` into each checkpoint (adapters and full models do not hold the head)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            save_value_head(self.model.v_head, folder)


def pairwise_collator(cfg: TuneforgeConfig, tokenizer: Any) -> PairwiseCollator:
    """B chosen rows followed by B rejected rows, right-padded."""
    return PairwiseCollator(tokenizer.pad_token_id, pad_to_multiple_of=pad_multiple())


def build_rm(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> StagePlan:
    """The reward-model plan: a fresh value head on `model`, the pairwise loss, head checkpoints and saving."""
    attach_value_head(model)
    metrics = MetricStore()
    return StagePlan(
        loss=RewardLoss(metrics),
        metrics=metrics,
        callbacks=[ValueHeadCheckpoint(model)],
        plot_keys=("rewards/accuracies", "eval_rewards/accuracies"),
        save=save_with_head,
        resume_extra=_resume_head,
    )


def save_with_head(model: Any, out: Path, save_model: SaveModel) -> None:
    """Save the causal LM without its value head, then the head as `value_head.safetensors` beside it."""
    head = detach_value_head(model)
    try:
        save_model()
    finally:
        if head is not None:
            model.v_head = head  # the final evaluation still scores with it
    if head is not None:
        save_value_head(head, out)


def _resume_head(model: Any, checkpoint: str) -> None:
    path = Path(checkpoint) / VALUE_HEAD_FILE
    if path.is_file():
        load_value_head_state(model.v_head, path)


RM = StageSpec(collator=pairwise_collator, plan=build_rm)


def run_rm(cfg: TuneforgeConfig, tokenizer: Any = None) -> dict[str, Any]:
    """Train a reward model as `cfg` says; returns the final metrics."""
    return run_stage(cfg, RM, tokenizer)
