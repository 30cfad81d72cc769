"""Training stages: pt, sft, rm, dpo family, kto, ppo, grpo."""

from __future__ import annotations

from typing import Any

from tuneforge.errors import NotBuiltError


def run_training(cfg: Any) -> None:
    """Run the training stage the config names."""
    raise NotBuiltError("`tuneforge train` is not built yet; the config was read and validated.")
