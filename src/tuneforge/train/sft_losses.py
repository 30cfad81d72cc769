"""The sft stage's alternative token losses: DFT, EAFT and ASFT (`use_dft_loss`, `use_eaft_loss`, `use_asft_loss`).

Each reweights the per-token cross-entropy with a weight that carries no gradient:
- DFT (dynamic fine-tuning): the model's own probability of the label token, p = exp(-CE).
- EAFT (entropy-adaptive): (H / 3) ** eaft_alpha, H the entropy of the softmax over the 20 largest logits.
- ASFT (anchored): the DFT loss plus `asft_alpha` times KL(reference || policy) per token.

Losses are token-weighted like the plain sft loss: summed over the label tokens and divided by the label tokens of
the whole accumulated batch (`num_items_in_batch`), so packing and gradient accumulation change nothing; without
that count (evaluation) they are a mean over the batch's label tokens. `sft_loss_func(cfg, model)` picks one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from tuneforge.train.losses import IGNORE

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

EAFT_TOP_K = 20  # EAFT's entropy is taken over the 20 most likely tokens ...
EAFT_SCALE = 3.0  # ... and divided by 3 (about ln 20, the largest it can be)
SFT_LOSS_KEYS = {"use_dft_loss": "dft", "use_eaft_loss": "eaft", "use_asft_loss": "asft"}
_FORWARD_ONLY = ("labels", "shift_labels", "num_items_in_batch", "use_cache", "return_dict")


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, V] (at least float32) and next-token labels [N] of the positions that predict a label token."""
    labels = F.pad(labels, (0, 1), value=IGNORE)[..., 1:].reshape(-1).to(logits.device)
    logits = logits.reshape(-1, logits.shape[-1])
    mask = labels != IGNORE
    return logits[mask].to(torch.promote_types(logits.dtype, torch.float32)), labels[mask]


def dft_weights(token_ce: torch.Tensor) -> torch.Tensor:
    """DFT: each label token's predicted probability exp(-CE), without gradient."""
    return torch.exp(-token_ce.detach())


def eaft_weights(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """EAFT: (entropy of the softmax over the top-20 logits / 3) ** alpha per position, without gradient."""
    with torch.no_grad():
        top = torch.topk(logits, k=min(EAFT_TOP_K, logits.shape[-1]), dim=-1).values
        logp = torch.log_softmax(top, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        return (entropy / EAFT_SCALE) ** alpha


def reference_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(reference || policy) = sum_v q_v (log q_v - log p_v), gradient through the policy only."""
    log_q = torch.log_softmax(ref_logits.to(logits.dtype), dim=-1)
    log_p = torch.log_softmax(logits, dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def token_weighted(per_token: torch.Tensor, num_items: Any) -> torch.Tensor:
    """Sum over label tokens divided by `num_items` (the accumulated batch's label tokens), else their mean."""
    if num_items is None:
        return per_token.sum() / max(per_token.numel(), 1)
    if torch.is_tensor(num_items):
        num_items = num_items.to(per_token.device)
    return per_token.sum() / num_items


class SftLoss:
    """`compute_loss_func` for the Trainer: (outputs, labels, num_items_in_batch) -> the DFT/EAFT/ASFT loss.

    ASFT needs the reference's logits for the same batch: `watch(model)` records each forward's inputs so the
    reference (a frozen model, or the policy with its adapter disabled when `ref` is None) sees them too.
    """

    def __init__(self, kind: str, alpha: float = 1.0, ref: Any = None) -> None:
        self.kind, self.alpha, self.ref = kind, alpha, ref
        self.model: Any = None
        self._inputs: dict[str, Any] = {}
        self._in_reference = False

    def watch(self, model: Any) -> None:
        """Remember `model`'s forward inputs (ASFT only): the reference pass replays them."""
        self.model = model
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        if not self._in_reference:
            self._inputs = {k: v for k, v in kwargs.items() if k not in _FORWARD_ONLY}

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        picked, targets = shifted(logits, labels)
        if targets.numel() == 0:
            return logits.sum() * 0.0  # no label token: a zero that keeps the graph (all ranks step together)
        ce = F.cross_entropy(picked, targets, reduction="none")
        if self.kind == "eaft":
            return token_weighted(ce * eaft_weights(picked, self.alpha), num_items_in_batch)
        per_token = ce * dft_weights(ce)
        if self.kind == "asft":
            ref_picked, _ = shifted(self._reference_logits(), labels)
            per_token = per_token + self.alpha * reference_kl(picked, ref_picked)
        return token_weighted(per_token, num_items_in_batch)

    def _reference_logits(self) -> torch.Tensor:
        from tuneforge.train.reference import reference_logits

        self._in_reference = True
        try:
            # no KV cache: with one, transformers stops keeping packed samples apart in the attention mask
            return reference_logits(self.model, self.ref, **self._inputs, use_cache=False)
        finally:
            self._in_reference = False


def chosen_sft_loss(cfg: TuneforgeConfig) -> str | None:
    """`dft`, `eaft` or `asft` when the config asks for one (config checks allow at most one), else None."""
    return next((kind for key, kind in SFT_LOSS_KEYS.items() if getattr(cfg.method, key)), None)


def sft_loss_func(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> Callable[..., torch.Tensor] | None:
    """The Trainer's `compute_loss_func` for the sft stage's loss switches, or None for the plain cross-entropy.

    ASFT loads its reference here: `ref_model` if set, the policy with its adapter disabled under LoRA, else a
    frozen copy of the base model.
    """
    kind = chosen_sft_loss(cfg)
    if kind is None:
        return None
    logger.info("SFT loss: %s", kind.upper())
    if kind == "dft":
        return SftLoss("dft")
    if kind == "eaft":
        return SftLoss("eaft", cfg.method.eaft_alpha)
    from tuneforge.train.reference import load_reference

    ref = load_reference(cfg, model, tokenizer)
    attention = model.config._attn_implementation
    if ref is not None and ref.config._attn_implementation != attention:
        ref.set_attn_implementation(attention)  # padding-free batches need the policy's varlen attention
    loss = SftLoss("asft", cfg.method.asft_alpha, ref)
    loss.watch(model)
    return loss
