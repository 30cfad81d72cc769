"""One bad row never harms its batch: sampling and streaming failures fail that row's request alone.

The batched sampler runs first; only when it raises is every row sampled on its own (with its seeded generator
rewound, so the good rows draw exactly the tokens they would have drawn), and the rows that still raise fail.
A row whose own logits are finite failed because of its sampling settings (`SamplingError`, a 4xx in the API);
non-finite logits are the model's fault (a 5xx).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuneforge.infer.requests import SamplingError

if TYPE_CHECKING:
    import torch

    from tuneforge.infer.params import SamplingParams
    from tuneforge.infer.rows import Row

logger = logging.getLogger(__name__)

Sampler = Callable[["torch.Tensor", list[Any], list[Any], list[Any]], list[int]]


def pick_tokens(rows: list[Row], logits: torch.Tensor, sampler: Sampler) -> list[int | None]:
    """The next token of every row, or None for a row that failed (its request got `Failed`)."""
    generators = [row.sampling_state[2] for row in rows]
    states = [g.get_state() if g is not None else None for g in generators]
    try:
        return list(_sample(rows, logits, sampler))
    except Exception as error:
        logger.warning("Batched sampling failed (%s); sampling each of the %d rows alone", error, len(rows))
    for generator, state in zip(generators, states, strict=True):
        if generator is not None:
            generator.set_state(state)
    tokens: list[int | None] = []
    for index, row in enumerate(rows):
        try:
            tokens.append(_sample([row], logits[index : index + 1], sampler)[0])
        except Exception as error:
            logger.warning("Request %s failed to sample: %s", row.request.request_id, error)
            row.fail(row_error(error, logits[index], row.request.params))
            tokens.append(None)
    return tokens


def accept_token(row: Row, token: int) -> None:
    """Count and stream `token` for `row`; a failure there (detokenising, emitting) fails this row only."""
    try:
        row.record(token)
        row.accept(token)
    except Exception as error:
        logger.exception("Streaming a token failed for request %s", row.request.request_id)
        row.fail(error)


def row_error(error: BaseException, logits: torch.Tensor, params: SamplingParams) -> BaseException:
    """`SamplingError` when the row's logits were finite (its settings broke the maths), else a server fault."""
    import torch

    if bool(torch.isfinite(logits).all()):
        settings = ", ".join(f"{name}={getattr(params, name)}" for name in _SETTINGS)
        return SamplingError(f"Sampling failed with this request's settings ({settings}): {error}")
    return RuntimeError(f"The model produced non-finite logits: {error}")


_SETTINGS = ("temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty")


def _sample(rows: list[Row], logits: torch.Tensor, sampler: Sampler) -> list[int]:
    params, counts, generators = zip(*(row.sampling_state for row in rows), strict=True)
    return sampler(logits, list(params), list(counts), list(generators))
