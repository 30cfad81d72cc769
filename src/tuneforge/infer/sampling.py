"""Choosing the next token for each row of a batch: penalties, temperature, top-k, top-p, per-request seeds.

Order follows transformers' `generate`: repetition penalty, then the OpenAI presence/frequency penalties, then
temperature, top-k and top-p, then sampling (or arg-max for greedy rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from tuneforge.infer.params import SamplingParams


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A torch.Generator seeded for one request, or None to use the global random state."""
    import torch

    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def apply_penalties(logits: torch.Tensor, counts: torch.Tensor | None, params: SamplingParams) -> torch.Tensor:
    """Repetition (multiplicative, HF meaning) and presence/frequency (additive, OpenAI meaning) penalties.

    `logits` and `counts` are 1-D over the vocabulary; `counts[t]` is how often token t was generated (None:
    no penalty is configured).
    """
    if counts is None:
        return logits
    seen = counts > 0
    if params.repetition_penalty != 1.0 and bool(seen.any()):
        penalised = logits.where(logits < 0, logits / params.repetition_penalty)
        penalised = penalised.where(logits >= 0, logits * params.repetition_penalty)
        logits = logits.where(~seen, penalised)
    if params.frequency_penalty:
        logits = logits - params.frequency_penalty * counts.to(logits.dtype)
    if params.presence_penalty:
        logits = logits - params.presence_penalty * seen.to(logits.dtype)
    return logits


def sample_batch(
    logits: torch.Tensor,
    params: list[SamplingParams],
    counts: list[torch.Tensor | None],
    generators: list[torch.Generator | None],
) -> list[int]:
    """The next token of every row from last-position logits `[batch, vocab]`.

    One batched top-k (or sort, when a row has no top-k) over the vocabulary serves all rows; temperature, top-p
    and sampling then run per row on the few surviving candidates.
    """
    import torch

    vocab = logits.shape[-1]
    logits = logits.float()
    if any(c is not None for c in counts):
        logits = torch.stack([apply_penalties(row, c, p) for row, c, p in zip(logits, counts, params, strict=True)])
    ks = [1 if p.greedy else (p.top_k if 0 < p.top_k < vocab else vocab) for p in params]
    widest = max(ks)
    if widest < vocab:
        values, ids = torch.topk(logits, widest)
    else:
        values, ids = torch.sort(logits, descending=True)
    return [
        int(row_ids[0]) if p.greedy else _sample_row(row_values[:k], row_ids[:k], p, g)
        for row_values, row_ids, k, p, g in zip(values, ids, ks, params, generators, strict=True)
    ]


def _sample_row(
    values: torch.Tensor, ids: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> int:
    """Temperature and top-p over candidates sorted most likely first, then one draw."""
    import torch

    probs = (values / params.temperature).softmax(-1)
    if params.top_p < 1.0:
        drop = probs.cumsum(-1) - probs >= params.top_p  # keep the token that crosses top_p
        probs = probs.masked_fill(drop, 0.0)
    total = float(probs.sum())  # inf or NaN anywhere makes the sum non-finite
    if not total > 0 or total == float("inf"):
        raise ValueError(f"sampling probabilities are not finite (sum {total})")
    return int(ids[torch.multinomial(probs, 1, generator=generator)])
