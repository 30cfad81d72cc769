"""Stage grpo: group relative policy optimisation on prompts (tuneforge-only; LLaMA-Factory has no grpo stage).

Each step samples `num_generations` completions per prompt (`per_device_train_batch_size` prompts), scores them
with the reward model (`reward_model`, any `reward_model_type`) and/or `reward_funcs`, normalises rewards within
each group, and minimises the clipped surrogate (`grpo_epsilon`) plus `grpo_beta` times the k3 KL estimate to
the reference. One optimisation step per batch of samples, so the ratio starts at 1 and clipping only bounds the
step. Everything else (optimizer, schedule, checkpoints, resume, logs) is the Trainer's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from tuneforge.data.collate import PaddingCollator
from tuneforge.errors import ConfigError
from tuneforge.train.losses import group_advantages, grpo_token_losses, k3_kl, masked_mean, token_logps
from tuneforge.train.recipe import MetricStore, StagePlan, StageSpec, run_stage
from tuneforge.train.reference import load_reference, reference_logits
from tuneforge.train.rewards import load_reward_funcs, load_reward_model
from tuneforge.train.rollout import sample, score

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


class GRPOLoss:
    """Sample groups, score them and return the GRPO loss for one batch of prompts; records metrics."""

    def __init__(self, cfg: TuneforgeConfig, tokenizer: Any, ref: Any, rewards: tuple[Any, list], metrics: Any):
        self.cfg, self.tokenizer, self.ref = cfg, tokenizer, ref
        self.reward_model, self.funcs = rewards
        self.metrics = metrics

    def __call__(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        r = self.cfg.rlhf
        rollout = sample(model, self.tokenizer, batch, self.cfg, repeats=r.num_generations)
        rewards, parts = score(rollout, self.reward_model, self.funcs, self.tokenizer)
        advantages = group_advantages(rewards, r.num_generations).to(rollout.sequences.device)
        inputs = {"input_ids": rollout.sequences, "attention_mask": rollout.attention_mask}
        labels = rollout.labels()
        logps, mask = token_logps(model(**inputs).logits, labels)
        ref_logps = None
        if r.grpo_beta > 0:
            ref_logps, _ = token_logps(reference_logits(model, self.ref, **inputs), labels)
        losses = grpo_token_losses(
            logps, logps.detach(), ref_logps, advantages, beta=r.grpo_beta, epsilon=r.grpo_epsilon
        )
        loss = masked_mean(losses, mask, dim=1).mean()
        metrics = {"rewards/mean": rewards.mean(), "rewards/std": rewards.std() if rewards.numel() > 1 else 0.0}
        metrics |= parts
        metrics["completions/mean_length"] = rollout.completion_mask.sum(1).float().mean()
        if ref_logps is not None:
            metrics["objective/kl"] = masked_mean(k3_kl(logps.detach(), ref_logps), mask)
        self.metrics.add(metrics, model.training)
        return loss


def build_grpo(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> StagePlan:
    """The grpo plan: reference (when grpo_beta > 0), rewards, the GRPO loss."""
    r = cfg.rlhf
    funcs = load_reward_funcs(r.reward_func_specs)
    reward_model = load_reward_model(cfg, tokenizer)
    if r.num_generations < 2:
        raise ConfigError("`num_generations` must be at least 2: GRPO compares completions within a group.")
    ref = load_reference(cfg, model, tokenizer) if r.grpo_beta > 0 else None
    metrics = MetricStore()
    return StagePlan(
        loss=GRPOLoss(cfg, tokenizer, ref, (reward_model, funcs), metrics),
        metrics=metrics,
        plot_keys=("rewards/mean",),
    )


def prompt_collator(cfg: TuneforgeConfig, tokenizer: Any) -> PaddingCollator:
    """Left-padded prompt batches, ready for generation."""
    return PaddingCollator(tokenizer.pad_token_id, padding_side="left")


GRPO = StageSpec(collator=prompt_collator, plan=build_grpo)


def run_grpo(cfg: TuneforgeConfig, tokenizer: Any = None) -> dict[str, Any]:
    """Train with GRPO as `cfg` says; returns the final metrics."""
    return run_stage(cfg, GRPO, tokenizer)
