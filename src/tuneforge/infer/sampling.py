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

    Nothing sorts the vocabulary: greedy rows take one batched arg-max; sampled rows share one batched top-k
    of the widest width any of them needs (their `top_k`, or `PARTIAL` candidates for a `top_p`-only row, which
    falls back to the whole vocabulary only when those candidates hold less than `top_p` of the mass).
    """
    import torch

    logits = logits.float()
    if any(c is not None for c in counts):
        logits = _penalised(logits, counts, params)
    tokens = argmax(logits) if any(p.greedy for p in params) else [0] * len(params)
    sampled = [i for i, p in enumerate(params) if not p.greedy]
    if not sampled:
        return tokens
    rows = logits[torch.tensor(sampled)] if len(sampled) < len(params) else logits
    picks = _sample_rows(rows, [params[i] for i in sampled], [generators[i] for i in sampled])
    for index, token in zip(sampled, picks, strict=True):
        tokens[index] = token
    return tokens


PARTIAL = 64  # candidates tried first for a top_p-only row


def _block(vocab: int) -> int | None:
    """A block length dividing `vocab` for the two-level searches below (None: no suitable divisor)."""
    return next((size for size in (128, 96, 64, 160, 192, 256, 48, 32) if vocab % size == 0), None)


def argmax(logits: torch.Tensor) -> list[int]:
    """Row-wise arg-max (first index on ties) of `[batch, vocab]`, without a scalar scan of every element.

    torch's CPU `argmax` is not vectorised; `amax` is. So: the max of each block, the first block holding the
    row's max, then the arg-max inside that one block. Same answer as `logits.argmax(-1)`, several times faster.
    """
    return best(logits)[1].tolist()


def best(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise (max, arg-max) of `[batch, vocab]` as tensors, by the block search of `argmax`."""
    import torch

    rows, vocab = logits.shape
    size = _block(vocab)
    if size is None or logits.device.type != "cpu":
        where = logits.argmax(-1)
        return logits.gather(1, where[:, None])[:, 0], where
    blocks = logits.contiguous().view(rows, vocab // size, size)
    chosen = blocks.amax(-1).argmax(-1)
    inside = blocks[torch.arange(rows), chosen]
    inner = inside.argmax(-1)
    return inside.gather(1, inner[:, None])[:, 0], chosen * size + inner


def topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise `torch.topk(logits, k)` reading only the k blocks with the largest maxima after one `amax`.

    The k largest values of a row lie in the k blocks whose maxima are largest, so the exact answer comes from
    a top-k over `k * block` candidates instead of the whole vocabulary.
    """
    import torch

    rows, vocab = logits.shape
    size = _block(vocab)
    if size is None or k > vocab // size // 4 or logits.device.type != "cpu":
        return torch.topk(logits, k)
    blocks = logits.contiguous().view(rows, vocab // size, size)
    chosen = blocks.amax(-1).topk(k, -1).indices
    candidates = blocks[torch.arange(rows)[:, None], chosen].reshape(rows, -1)
    values, where = candidates.topk(k, -1)
    return values, chosen.gather(1, where // size) * size + where % size


def _penalised(logits: torch.Tensor, counts: list[torch.Tensor | None], params: list[SamplingParams]) -> torch.Tensor:
    """Penalties on the rows that have counts (the others are left as they are)."""
    import torch

    return torch.stack(
        [
            row if c is None else apply_penalties(row, c.to(row.device), p)  # counts live on the CPU
            for row, c, p in zip(logits, counts, params, strict=True)
        ]
    )


def _sample_rows(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[int]:
    """One draw per row: a batched partial top-k, then temperature / top-p on the candidates of each row."""
    import torch

    vocab = logits.shape[-1]
    ks = [p.top_k if 0 < p.top_k < vocab else None for p in params]
    width = max([k or (PARTIAL if p.top_p < 1.0 else vocab) for k, p in zip(ks, params, strict=True)])
    width = min(width, vocab)
    values, ids = topk(logits, width) if width < vocab else (logits, None)
    out = []
    for row, (p, k, g) in enumerate(zip(params, ks, generators, strict=True)):
        if ids is None or (k is None and p.top_p >= 1.0):
            out.append(_draw((logits[row] / p.temperature).softmax(-1), None, g))
            continue
        probs = _candidate_probs(logits[row], values[row], k, p)
        if probs is None:  # top_p needs more than the partial candidates: the exact path over everything
            sorted_values, sorted_ids = torch.sort(logits[row], descending=True)
            out.append(_draw(_top_p((sorted_values / p.temperature).softmax(-1), p.top_p), sorted_ids, g))
        else:
            out.append(_draw(probs, ids[row, : probs.shape[0]], g))
    return out


def _candidate_probs(row: torch.Tensor, values: torch.Tensor, k: int | None, p: SamplingParams) -> torch.Tensor | None:
    """Probabilities of the top candidates after temperature, top-k and top-p; None when they are too few."""
    if k is not None:
        probs = (values[:k] / p.temperature).softmax(-1)  # top-k first: top-p renormalises over the k kept
    else:
        scaled = values / p.temperature
        probs = (scaled - (row / p.temperature).logsumexp(-1)).exp()  # shares of the whole vocabulary
        if float(probs.sum()) < p.top_p:
            return None
    return _top_p(probs, p.top_p) if p.top_p < 1.0 else probs


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the candidates (sorted most likely first) past the one that crosses `top_p`."""
    drop = probs.cumsum(-1) - probs >= top_p
    return probs.masked_fill(drop, 0.0)


def _draw(probs: torch.Tensor, ids: torch.Tensor | None, generator: torch.Generator | None) -> int:
    import torch

    if generator is not None and generator.device != probs.device:  # seeded generators live on the CPU
        probs = probs.to(generator.device)
    total = float(probs.sum())  # inf or NaN anywhere makes the sum non-finite
    if not total > 0 or total == float("inf"):
        raise ValueError(f"sampling probabilities are not finite (sum {total})")
    choice = int(torch.multinomial(probs, 1, generator=generator))
    return choice if ids is None else int(ids[choice])
