"""Training stages: pt, sft, rm, dpo family, kto, ppo and grpo.

Import-light on purpose: the CLI imports this package; torch and transformers load inside `run_training`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


def run_training(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Run the training stage the config names and write its outputs to `output_dir`; returns final metrics."""
    from tuneforge.train.runner import run

    return run(cfg)


__all__ = ["run_training"]
