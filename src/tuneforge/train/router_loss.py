"""The mixture-of-experts router auxiliary loss as its own value in the training log (`aux_loss`).

A MoE model trained with `moe_aux_loss_coef` returns `aux_loss`, the load-balancing loss before the coefficient,
besides its total loss (language-model loss + coefficient * aux_loss, which is what `loss` logs). The meter
averages it over the micro-batches since the last log and over processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class RouterLossMeter:
    """Running mean of the models' `aux_loss` between two training logs."""

    def __init__(self) -> None:
        self._total: torch.Tensor | None = None
        self._count = 0

    def add(self, outputs: Any) -> None:
        """Record `outputs.aux_loss` of one training forward, if the model returned one."""
        aux = outputs.get("aux_loss") if isinstance(outputs, dict) else None
        if aux is None:
            return
        value = aux.detach().float()
        self._total = value if self._total is None else self._total + value
        self._count += 1

    def pop(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> float | None:
        """The mean since the last call (averaged across processes with `reduce`), then start again; None if none."""
        if self._total is None:
            return None
        mean = reduce(self._total / self._count)
        self._total, self._count = None, 0
        return round(float(mean), 6)
