"""Pure loss functions of the alignment stages: per-token log-probs, reward-model, DPO family, KTO, PPO, GRPO.

Every function takes tensors and flat numbers and returns tensors; nothing here knows about configs, models or
Trainers, so each formula can be checked against the paper on hand-made numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")
AVERAGED_LOSSES = ("ipo", "orpo", "simpo")  # these compare mean per-token log-probs, not sums
REFERENCE_FREE = ("orpo", "simpo")


# ---- log-probabilities --------------------------------------------------------------------------------------


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the next-token labels and their mask, both [B, T-1] (labels -100 are masked)."""
    logits, labels = logits[:, :-1, :], labels[:, 1:]
    mask = labels != IGNORE
    safe = torch.where(mask, labels, torch.zeros_like(labels))
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision is not enough here
    picked = torch.gather(logits, 2, safe.unsqueeze(-1)).squeeze(-1)
    logps = picked - torch.logsumexp(logits, dim=-1)
    return logps * mask, mask


def sequence_logps(
    logps: torch.Tensor, mask: torch.Tensor, shared_len: torch.Tensor | None = None, ld_alpha: float | None = None
) -> torch.Tensor:
    """Summed response log-prob per row; with LD-DPO, tokens past `shared_len` count `ld_alpha` times."""
    if ld_alpha is None or shared_len is None:
        return (logps * mask).sum(-1)
    position = mask.long().cumsum(-1)
    weight = torch.where(position <= shared_len.unsqueeze(-1), 1.0, float(ld_alpha))
    return (logps * mask * weight).sum(-1)


# ---- reward model -------------------------------------------------------------------------------------------


def pairwise_reward_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss of a reward model: mean of -log sigmoid(r_chosen - r_rejected)."""
    return -F.logsigmoid(chosen.float() - rejected.float()).mean()


# ---- DPO family ---------------------------------------------------------------------------------------------


def dpo_losses(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor | None,
    ref_rejected: torch.Tensor | None,
    *,
    loss: str = "sigmoid",
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference losses and the implicit rewards (chosen, rejected) for `loss` (see PREF_LOSSES).

    `chosen`/`rejected` are the policy's response log-probs (mean per token for ipo/orpo/simpo, sums otherwise);
    `ref_*` the reference model's (None for orpo and simpo, which need no reference).
    """
    if loss == "orpo":
        return orpo_losses(chosen, rejected, beta), beta * chosen.detach(), beta * rejected.detach()
    if loss == "simpo":
        logits = chosen - rejected - simpo_gamma / beta
        return -F.logsigmoid(beta * logits), beta * chosen.detach(), beta * rejected.detach()
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    rewards = beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
    logits = chosen_ratio - rejected_ratio
    if loss == "sigmoid":
        eps = label_smoothing
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    elif loss == "hinge":
        losses = torch.relu(1 - beta * logits)
    elif loss == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    elif loss == "kto_pair":
        losses = kto_pair_losses(chosen_ratio, rejected_ratio, beta)
    else:
        raise ValueError(f"unknown preference loss {loss!r}; use one of {', '.join(PREF_LOSSES)}")
    return losses, *rewards


def orpo_losses(chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """ORPO: NLL of the chosen response plus beta times -log sigmoid(log odds ratio); inputs are mean log-probs."""
    log_odds = (chosen - rejected) - (torch.log1p(-torch.exp(chosen)) - torch.log1p(-torch.exp(rejected)))
    return -chosen - beta * F.logsigmoid(log_odds)


def kto_pair_losses(chosen_ratio: torch.Tensor, rejected_ratio: torch.Tensor, beta: float) -> torch.Tensor:
    """Paired KTO: each side against the batch's (clamped, mean) log-ratio of the other side, as a KL estimate."""
    chosen_kl = chosen_ratio.mean().clamp(min=0)
    rejected_kl = rejected_ratio.mean().clamp(min=0)
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_ratio - rejected_kl))
    rejected_losses = 1 - torch.sigmoid(beta * (chosen_kl - rejected_ratio))
    return (chosen_losses + rejected_losses) / 2


def bco_losses(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, delta: float) -> torch.Tensor:
    """BCO: binary classification of the implicit rewards around the running reward mean `delta`."""
    return -F.logsigmoid(chosen_rewards - delta) - F.logsigmoid(-(rejected_rewards - delta))


def mix_preference_losses(
    losses: torch.Tensor,
    chosen_mean_logps: torch.Tensor,
    *,
    ftx: float = 0.0,
    bco: torch.Tensor | None = None,
    bco_weight: float = 0.0,
) -> torch.Tensor:
    """Add BCO (weighted average with the preference loss) and the SFT term `ftx * NLL(chosen)` per pair."""
    if bco is not None and bco_weight > 0:
        losses = (losses + bco_weight * bco) / (1 + bco_weight)
    if ftx > 0:
        losses = losses - ftx * chosen_mean_logps
    return losses


# ---- KTO ----------------------------------------------------------------------------------------------------


def kto_losses(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    kl_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    desirable: torch.Tensor,
    *,
    beta: float = 0.1,
    chosen_weight: float = 1.0,
    rejected_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row KTO losses, implicit rewards, and the KL estimate from mismatched (prompt, other response) pairs.

    Desirable rows: w_d (1 - sigmoid(beta (log-ratio - z))); undesirable: w_u (1 - sigmoid(beta (z - log-ratio))),
    where z = max(0, mean log-ratio on the mismatched pairs), held constant (no gradient).
    """
    kl = (kl_logps - ref_kl_logps).mean().clamp(min=0).detach()
    ratio = logps - ref_logps
    chosen = chosen_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    rejected = rejected_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    return torch.where(desirable, chosen, rejected), beta * ratio.detach(), kl


# ---- PPO / GRPO ---------------------------------------------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is set (over `dim`, or everything)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise to unit variance (and zero mean unless `shift_mean` is false) over the masked entries."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    return out if shift_mean else out + mean


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over response tokens ([B, T] each, masked positions 0)."""
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < steps else 0)
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def clipped_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO surrogate -min(r A, clip(r, 1-eps, 1+eps) A) and whether each token was clipped."""
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages
    return -torch.min(unclipped, clipped), (clipped < unclipped).float()


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> torch.Tensor:
    """Per-token value loss 0.5 * max((v - R)^2, (clip(v, old +- clip) - R)^2)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1 (always >= 0)."""
    diff = ref_logps - logps
    return torch.exp(diff) - diff - 1


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """GRPO advantages: each reward minus its group's mean, over the group's standard deviation (+1e-4)."""
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(1, keepdim=True)
    std = grouped.std(1, keepdim=True) if group_size > 1 else torch.ones_like(mean)
    return ((grouped - mean) / (std + 1e-4)).view(-1)


def grpo_token_losses(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    *,
    beta: float,
    epsilon: float,
) -> torch.Tensor:
    """Per-token GRPO loss: the clipped surrogate with per-sequence advantages plus beta times the k3 KL."""
    losses, _ = clipped_policy_loss(logps, old_logps, advantages.unsqueeze(1), epsilon)
    if ref_logps is not None and beta > 0:
        losses = losses + beta * k3_kl(logps, ref_logps)
    return losses
