"""Dispatch `tuneforge train` to the recipe of the configured stage."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from tuneforge.errors import NotBuiltError, TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

# Each stage's recipe as `module:function(cfg) -> metrics`.
RECIPES = {
    "pt": "tuneforge.train.sft:run_sft",
    "sft": "tuneforge.train.sft:run_sft",
    "rm": "tuneforge.train.rm:run_rm",
    "dpo": "tuneforge.train.dpo:run_dpo",
    "kto": "tuneforge.train.kto:run_kto",
    "ppo": "tuneforge.train.ppo:run_ppo",
    "grpo": "tuneforge.train.grpo:run_grpo",
}
BUILT_STAGES = tuple(RECIPES)


def check_trainable(cfg: TuneforgeConfig) -> None:
    """Refuse configs that cannot train before anything heavy is loaded."""
    if not cfg.model.model_name_or_path:
        raise TuneforgeError("`model_name_or_path` is not set; name a local model folder or a Hub id.")
    if not cfg.training.output_dir:
        raise TuneforgeError("`output_dir` is not set; name the folder that receives the model, logs and metrics.")
    if cfg.method.stage not in BUILT_STAGES:
        raise NotBuiltError(
            f"`stage: {cfg.method.stage}` is not built yet; stages available now: {', '.join(BUILT_STAGES)}."
        )


def run(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Train as the config says; returns the final metrics."""
    check_trainable(cfg)
    _show_info_logs()
    module, function = RECIPES[cfg.method.stage].split(":")
    return getattr(importlib.import_module(module), function)(cfg)


def _show_info_logs() -> None:
    package = logging.getLogger("tuneforge")
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[tuneforge] %(levelname)s %(message)s"))
        package.addHandler(handler)
