"""Stage kto: Kahneman-Tversky optimisation on unpaired rows labelled desirable / undesirable (`kto_tag`).

The KL reference point is estimated from mismatched pairs (each prompt with another row's response, built by the
data pipeline), as in the KTO paper and TRL; `kto_chosen_weight` / `kto_rejected_weight` weight the two kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from tuneforge.data.collate import KTOCollator
from tuneforge.train.losses import kto_losses, sequence_logps, token_logps
from tuneforge.train.recipe import MetricStore, StagePlan, StageSpec, pad_multiple, run_stage
from tuneforge.train.reference import forward_inputs, load_reference, reference_logits

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


def _logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logps, mask = token_logps(logits, labels)
    return sequence_logps(logps, mask), (logps * mask).sum(-1) / mask.sum(-1).clamp(min=1)


class KTOLoss:
    """The KTO objective on a batch of completions and their mismatched KL completions; records metrics."""

    def __init__(self, cfg: TuneforgeConfig, ref: Any, metrics: MetricStore) -> None:
        self.r = cfg.rlhf
        self.ref = ref
        self.metrics = metrics

    def __call__(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        main, kl = forward_inputs(batch), forward_inputs(batch, "kl_")  # with the images of a multimodal batch
        logps, mean_logps = _logps(model(**main).logits, batch["labels"])
        with torch.no_grad():
            kl_logps, _ = _logps(model(**kl).logits, batch["kl_labels"])
        ref_logps, _ = _logps(reference_logits(model, self.ref, **main), batch["labels"])
        ref_kl_logps, _ = _logps(reference_logits(model, self.ref, **kl), batch["kl_labels"])
        desirable = batch["kto_tags"].to(logps.device)
        losses, rewards, kl_value = kto_losses(
            logps,
            ref_logps,
            kl_logps,
            ref_kl_logps,
            desirable,
            beta=self.r.pref_beta,
            chosen_weight=self.r.kto_chosen_weight,
            rejected_weight=self.r.kto_rejected_weight,
        )
        if self.r.pref_ftx > 0:
            losses = losses - self.r.pref_ftx * mean_logps * desirable
        self.metrics.add(kto_metrics(rewards, desirable, logps.detach(), kl_value), model.training)
        return losses.mean()


def kto_metrics(rewards: Any, desirable: Any, logps: Any, kl: Any) -> dict[str, Any]:
    """Mean rewards and log-probs of the desirable / undesirable rows in the batch, and the KL estimate."""
    out: dict[str, Any] = {"objective/kl": kl}
    for name, rows in (("chosen", desirable), ("rejected", ~desirable)):
        if rows.any():
            out[f"rewards/{name}"] = rewards[rows].mean()
            out[f"logps/{name}"] = logps[rows].mean()
    if desirable.any() and (~desirable).any():
        out["rewards/margins"] = rewards[desirable].mean() - rewards[~desirable].mean()
    return out


def build_kto(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> StagePlan:
    """The kto plan: reference model, KTO loss."""
    metrics = MetricStore()
    return StagePlan(
        loss=KTOLoss(cfg, load_reference(cfg, model, tokenizer), metrics),
        metrics=metrics,
        plot_keys=("rewards/chosen", "rewards/rejected"),
    )


def kto_collator(cfg: TuneforgeConfig, tokenizer: Any) -> KTOCollator:
    """Completions with their mismatched KL completions and desirable / undesirable tags."""
    return KTOCollator(tokenizer.pad_token_id, pad_to_multiple_of=pad_multiple())


KTO = StageSpec(collator=kto_collator, plan=build_kto)


def run_kto(cfg: TuneforgeConfig, tokenizer: Any = None) -> dict[str, Any]:
    """Train with KTO as `cfg` says; returns the final metrics."""
    return run_stage(cfg, KTO, tokenizer)
