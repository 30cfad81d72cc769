"""Greedy decoding's arg-max over part of an fp32 LM head, found by reading a quarter of its bytes, exactly.

A decode step of a few rows on CPU is bound by reading the head's weight (37 MiB for Qwen's 151,936 x 64 in fp32).
`Screen` keeps an int8 copy of the weight (one scale per word) and multiplies it first by the row's int8 levels
with torch's integer product (`torch._int_mm`: exact int32 sums; with one row it reads the copy at memory speed,
0.1 ms for 76k x 64 here against 0.9 ms for the fp32 half): every scaled sum lies within a proven distance of its
fp32 logit, so only the words whose score is within twice that distance of the best score can hold the arg-max
(usually a handful). Their 128-word blocks are then multiplied exactly, by the same fp32 product as the whole head
on the same columns, and the arg-max is taken over those exact logits: the arg-max of the whole product (first
index on ties), never an approximation. The head may be screened in parts (one per thread, `Part`): the candidates
are then chosen against the best score of all parts (`best`), since a part's own best usually lies in the bulk of
the distribution.

The distance, for a row `h` and a word's weight `w` (K values): the screen computes `w' . h'` with
`w' = scale_w q_w` and `h' = scale_h q_h` (int32 sums, exact), then three fp32 roundings (to float, two scalings);
the exact logit is an fp32 sum of K products. So, with u = 2^-24 and g = K u / (1 - K u),
    |logit - score| <= ||h|| ||w - w'|| + ||h - h'|| ||w'|| + 8u ||w'|| ||h'|| + g ||w|| ||h||,
taken with the largest ||w - w'|| and norms over the part, and widened by `MARGIN` for the rounding of the norms.
That each exact block product carries the whole product's very bits is checked on random rows when a `Screen` is
built (`agrees`), and screening is used only where it holds and measures faster than the whole product.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

BLOCK = 128  # words per exact block product (blocks start at multiples of it, as the checked ones)
MOST_BLOCKS = 16  # more candidate blocks than this in a row: the whole exact product is cheaper
MOST_ROWS = 3  # screening serves batches up to this size (larger ones are bound by arithmetic, not memory)
MARGIN = 1.01  # widens the proven distance to cover the rounding of the norms and the threshold
UNIT = 2.0**-24  # fp32 unit roundoff
LEVELS = 127  # int8 magnitudes used (symmetric: -127..127)

Found = tuple[list[float], list[int]]  # (max logit, first index of it) per row, as `sampling.best` gives them


@dataclass(frozen=True)
class Rows:
    """The rows `flat` [rows, hidden] as the int8 product takes them, with the norms the distance needs."""

    flat: torch.Tensor
    levels: torch.Tensor  # int8 [rows, hidden]: round(flat / scale), one scale per row
    scales: torch.Tensor  # [rows, 1] fp32
    norm: list[float]  # ||h|| per row
    error: list[float]  # ||h - h'|| per row
    quantised_norm: list[float]  # ||h'|| per row


def quantise(flat: torch.Tensor) -> Rows | None:
    """`flat` in the int8 product's terms (one scale per row); None when a row is not finite or all zero."""
    import torch

    tops = flat.abs().amax(dim=1, keepdim=True)
    if not all(0.0 < top < float("inf") for top in tops.view(-1).tolist()):
        return None
    scales = tops / LEVELS
    levels = torch.round(flat / scales)  # within -127..127: each row's largest magnitude maps to 127
    approx = levels * scales
    norm, error, quantised_norm = torch.linalg.vector_norm(torch.stack([flat, flat - approx, approx]), dim=2).tolist()
    return Rows(flat, levels.to(torch.int8), scales, norm, error, quantised_norm)


class Screen:
    """Row-wise (max, arg-max) of `flat @ columns` over one part of the head, through an int8 screening product."""

    def __init__(self, part: torch.Tensor, columns: torch.Tensor) -> None:
        self.columns = columns.detach()  # [hidden, words] fp32: the whole product's own operand
        self.levels, scales, self.weight_error, self.weight_norm = _quantised_weight(part)
        self.scales = scales[None, :]
        hidden = part.shape[1]
        self.gamma = hidden * UNIT / (1 - hidden * UNIT)

    def scores(self, rows: Rows) -> torch.Tensor:
        """The screening scores `[rows, words]` (each within `slack` of its exact logit): exact int32 sums of the
        int8 levels (one product per row: a one-column product is torch's fast case), scaled."""
        return self._word_scaled(rows) * rows.scales

    def tops(self, rows: Rows) -> torch.Tensor:
        """Each `BLOCK`-word block's best score per row, `[rows, blocks]` (the row's scale applied to the block
        maxima only: a positive factor and monotone rounding keep each maximum the scaled scores' maximum)."""
        return _block_tops(self._word_scaled(rows)) * rows.scales

    def _word_scaled(self, rows: Rows) -> torch.Tensor:
        """The int32 sums times each word's scale, `[rows, words]`."""
        import torch

        sums = [torch._int_mm(self.levels, rows.levels[row : row + 1].t()) for row in range(rows.levels.shape[0])]
        joined = sums[0] if len(sums) == 1 else torch.cat(sums, dim=1)
        return joined.t() * self.scales

    def slack(self, rows: Rows) -> list[float]:
        """Per row, the proven bound on |exact logit - score| over every word of the part (module docstring)."""
        size, weight = self.weight_norm, self.weight_error + self.gamma * self.weight_norm
        terms = zip(rows.norm, rows.error, rows.quantised_norm, strict=True)
        return [(norm * weight + size * (error + 8 * UNIT * approx)) * MARGIN for norm, error, approx in terms]

    def best(self, rows: Rows) -> Found | None:
        """`best` over this part alone."""
        return best([Part(self, self.tops(rows), 0)], rows)

    def exact(self, row: torch.Tensor, block: int) -> tuple[float, int]:
        """The best exact logit of one row over one block and its first index (within the part)."""
        import torch

        start = block * BLOCK
        top, where = torch.mm(row, self.columns[:, start : start + BLOCK])[0].max(dim=0)  # first index on ties
        return top.item(), start + int(where.item())


@dataclass(frozen=True)
class Part:
    """One screened part of the head: its screen, its block tops for the rows, its first word in the head."""

    screen: Screen
    tops: torch.Tensor
    offset: int


def best(parts: list[Part], rows: Rows) -> Found | None:
    """(max exact logit, first index of it) per row over all `parts` (in word order), as `sampling.best` of the
    whole product; None when too many blocks lie close to the top and the whole product should be used.

    A block can hold the arg-max only if its best score is within twice the largest part's distance of the best
    score over all parts: only those are multiplied exactly."""
    import torch

    maxima = torch.stack([part.tops.amax(dim=1) for part in parts]).amax(dim=0).tolist()
    slack = [max(each) for each in zip(*(part.screen.slack(rows) for part in parts), strict=True)]
    floor = torch.tensor([top - 2 * distance for top, distance in zip(maxima, slack, strict=True)])
    blocks: list[list[tuple[Part, int]]] = [[] for _ in maxima]
    for part in parts:
        for row, block in (part.tops >= floor[:, None]).nonzero().tolist():  # ascending within each row
            blocks[row].append((part, block))
    if not all(0 < len(found) <= MOST_BLOCKS for found in blocks):
        return None
    found = [_exact(rows.flat[row : row + 1], blocks[row]) for row in range(len(blocks))]
    return [value for value, _ in found], [index for _, index in found]


def _exact(row: torch.Tensor, blocks: list[tuple[Part, int]]) -> tuple[float, int]:
    """The best exact logit over `blocks` (in word order) and its first index in the head."""
    value, index = float("-inf"), -1
    for part, block in blocks:
        top, where = part.screen.exact(row, block)
        if top > value:  # strictly: an equal logit in a later block has a later index
            value, index = top, part.offset + where
    return value, index


def whole_best(logits: torch.Tensor) -> Found:
    """`sampling.best` of whole logits `[rows, words]` as Python lists: what a screen's `best` must equal."""
    from tuneforge.infer.sampling import best as block_best

    values, indices = block_best(logits)
    return values.tolist(), indices.tolist()


def _quantised_weight(part: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """int8 levels `[words, hidden]` with one scale per word (largest magnitude -> 127), the largest
    ||w - w'|| and the largest of ||w|| and ||w'|| over the words; `chunk` words at a time to bound memory."""
    import torch

    levels = torch.empty(part.shape, dtype=torch.int8)
    scales = torch.empty(part.shape[0], dtype=torch.float32)
    error = size = 0.0
    for start in range(0, part.shape[0], chunk):
        weight = part[start : start + chunk].detach().float()
        scale = weight.abs().amax(dim=1) / LEVELS
        scale = scale.where(scale > 0, torch.ones_like(scale))  # an all-zero word: any scale, levels 0
        level = torch.round(weight / scale[:, None]).clamp_(-LEVELS, LEVELS)
        approx = level * scale[:, None]
        levels[start : start + chunk], scales[start : start + chunk] = level, scale
        error = max(error, float(torch.linalg.vector_norm(weight - approx, dim=1).max()))
        size = max(size, float(torch.linalg.vector_norm(torch.stack([weight, approx]), dim=2).max()))
    return levels, scales, error, size


def build(part: torch.Tensor, columns: torch.Tensor, product: Callable[[torch.Tensor], torch.Tensor]) -> Screen | None:
    """A `Screen` for one part of the head when this torch has the int8 product, its block products carry the
    whole `product`'s bits, and screening one row measures faster than `product` plus its arg-max; else None."""
    import torch

    if not hasattr(torch, "_int_mm"):
        return None
    try:
        screen = Screen(part, columns)
        if not agrees(screen, product):
            logger.info("LM head screening: block products differ from the whole product here; not used")
            return None
    except (RuntimeError, AttributeError, NotImplementedError) as error:  # no int8 product for these shapes here
        logger.debug("LM head screening not available: %s", error)
        return None
    return screen if _faster(screen, product) else None


def agrees(screen: Screen, product: Callable[[torch.Tensor], torch.Tensor], trials: int = 1) -> bool:
    """Whether every block product of single rows equals `product` of `1..MOST_ROWS` rows, bit for bit, on random
    rows (so the screened arg-max is the whole product's), and screening finds the same tokens."""
    import torch

    generator = torch.Generator().manual_seed(0)
    hidden, words = screen.columns.shape
    for count in range(1, MOST_ROWS + 1):
        for _ in range(trials):
            flat = torch.randn(count, hidden, generator=generator)
            whole = product(flat)
            for row in range(count):
                for start in range(0, words, BLOCK):
                    part = torch.mm(flat[row : row + 1], screen.columns[:, start : start + BLOCK])
                    if not torch.equal(part, whole[row : row + 1, start : start + BLOCK]):
                        return False
            rows = quantise(flat)
            found = screen.best(rows) if rows is not None else None
            if found is not None and found != whole_best(whole):
                return False
    return True


def _faster(screen: Screen, product: Callable[[torch.Tensor], torch.Tensor], calls: int = 15) -> bool:
    """Whether screening one row beats the whole product and its arg-max (best of `calls` timings each)."""
    import torch

    flat = torch.randn(1, screen.columns.shape[0], generator=torch.Generator().manual_seed(1))
    rows = quantise(flat)
    ways = {"screen": lambda: screen.best(rows), "whole": lambda: whole_best(product(flat))}
    times = {name: _fastest(way, calls) for name, way in ways.items()}
    logger.debug("LM head screening: %.3f ms, whole product %.3f ms", times["screen"] * 1e3, times["whole"] * 1e3)
    return times["screen"] < times["whole"]


def _fastest(call: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _block_tops(scores: torch.Tensor) -> torch.Tensor:
    """Row-wise maximum of each `BLOCK`-word block of `scores` [rows, words] (the last block may be shorter)."""
    import torch

    rows, words = scores.shape
    whole = words // BLOCK * BLOCK
    tops = scores[:, :whole].reshape(rows, -1, BLOCK).amax(dim=2)
    return tops if whole == words else torch.cat([tops, scores[:, whole:].amax(dim=1, keepdim=True)], dim=1)
