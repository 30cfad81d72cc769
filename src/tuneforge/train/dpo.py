"""Stage dpo: direct preference optimisation and its variants (`pref_loss`: sigmoid, hinge, ipo, kto_pair, orpo,
simpo), with `pref_ftx` (SFT mix), `dpo_label_smoothing` (cDPO), `pref_bco_weight` (BCO mix) and `ld_alpha` (LD-DPO).

The reference is `ref_model` if set, else the base model: free with LoRA (the policy with its adapter disabled),
a frozen copy otherwise. ORPO and SimPO use no reference. Reference log-probs are computed per batch, no-grad.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from tuneforge.train.losses import (
    AVERAGED_LOSSES,
    REFERENCE_FREE,
    bco_losses,
    dpo_losses,
    mix_preference_losses,
    sequence_logps,
    token_logps,
)
from tuneforge.train.recipe import MetricStore, StagePlan, StageSpec, run_stage
from tuneforge.train.reference import forward_inputs, load_reference, reference_logits
from tuneforge.train.rm import pairwise_collator

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


class RunningMean:
    """Mean of every value seen so far (BCO's reward baseline `delta`)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> float:
        """Add `n` observations whose mean is `value`; returns the new running mean."""
        self.total += value * n
        self.count += n
        return self.total / self.count


def pair_logps(logits: torch.Tensor, labels: torch.Tensor, ld_alpha: float | None) -> dict[str, torch.Tensor]:
    """Summed and mean response log-probs of a 2B batch (chosen rows first), LD-DPO weighted when `ld_alpha`."""
    logps, mask = token_logps(logits, labels)
    lengths = mask.sum(-1)
    half = lengths.shape[0] // 2
    shared = torch.minimum(lengths[:half], lengths[half:]).repeat(2)
    summed = sequence_logps(logps, mask, shared, ld_alpha)
    return {"sum": summed, "mean": (logps * mask).sum(-1) / lengths.clamp(min=1)}


class PreferenceLoss:
    """The dpo-stage objective on a 2B batch; keeps the reference and records DPO metrics."""

    def __init__(self, cfg: TuneforgeConfig, ref: Any, metrics: MetricStore) -> None:
        self.r = cfg.rlhf
        self.ref = ref
        self.metrics = metrics
        self.bco_mean = RunningMean()

    def __call__(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        r = self.r
        inputs = forward_inputs(batch)  # the tokens, and the images of a multimodal batch
        policy = pair_logps(model(**inputs).logits, batch["labels"], r.ld_alpha)
        key = "mean" if r.pref_loss in AVERAGED_LOSSES else "sum"
        chosen, rejected = policy[key].chunk(2)
        ref_chosen = ref_rejected = None
        if r.pref_loss not in REFERENCE_FREE or r.pref_bco_weight > 0:
            ref = pair_logps(reference_logits(model, self.ref, **inputs), batch["labels"], r.ld_alpha)
            ref_chosen, ref_rejected = ref[key].chunk(2)
        losses, chosen_rewards, rejected_rewards = dpo_losses(
            chosen,
            rejected,
            ref_chosen,
            ref_rejected,
            loss=r.pref_loss,
            beta=r.pref_beta,
            label_smoothing=r.dpo_label_smoothing,
            simpo_gamma=r.simpo_gamma,
        )
        bco = self._bco(chosen, rejected, ref_chosen, ref_rejected) if r.pref_bco_weight > 0 else None
        chosen_mean = policy["mean"].chunk(2)[0]
        losses = mix_preference_losses(losses, chosen_mean, ftx=r.pref_ftx, bco=bco, bco_weight=r.pref_bco_weight)
        self.metrics.add(self._metrics(chosen_rewards, rejected_rewards, policy, chosen_mean), model.training)
        return losses.mean()

    def _bco(self, chosen: Any, rejected: Any, ref_chosen: Any, ref_rejected: Any) -> torch.Tensor:
        beta = self.r.pref_beta
        chosen_rewards, rejected_rewards = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
        batch_mean = torch.cat([chosen_rewards, rejected_rewards]).mean().item()
        delta = self.bco_mean.update(batch_mean, 2 * chosen.shape[0])
        return bco_losses(chosen_rewards, rejected_rewards, delta)

    def _metrics(self, chosen: Any, rejected: Any, policy: dict[str, Any], chosen_mean: Any) -> dict[str, Any]:
        logps_chosen, logps_rejected = policy["sum"].detach().chunk(2)
        out = {
            "rewards/chosen": chosen.mean(),
            "rewards/rejected": rejected.mean(),
            "rewards/margins": (chosen - rejected).mean(),
            "rewards/accuracies": (chosen > rejected).float().mean(),
            "logps/chosen": logps_chosen.mean(),
            "logps/rejected": logps_rejected.mean(),
        }
        if self.r.pref_ftx > 0 or self.r.pref_loss == "orpo":
            out["loss/sft"] = -chosen_mean.detach().mean()
        return out


def build_dpo(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> StagePlan:
    """The dpo plan: the reference (unless orpo/simpo), the preference loss."""
    r = cfg.rlhf
    needs_ref = r.pref_loss not in REFERENCE_FREE or r.pref_bco_weight > 0
    ref = load_reference(cfg, model, tokenizer) if needs_ref else None
    metrics = MetricStore()
    return StagePlan(
        loss=PreferenceLoss(cfg, ref, metrics),
        metrics=metrics,
        plot_keys=("rewards/accuracies", "rewards/margins"),
    )


DPO = StageSpec(collator=pairwise_collator, plan=build_dpo)


def run_dpo(cfg: TuneforgeConfig, tokenizer: Any = None) -> dict[str, Any]:
    """Train with a preference loss as `cfg` says; returns the final metrics."""
    return run_stage(cfg, DPO, tokenizer)
