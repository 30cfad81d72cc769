"""Dispatch `tuneforge train` to the recipe of the configured stage."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.require import require
from tuneforge.config.stages import stage
from tuneforge.extras import check_extras
from tuneforge.models.quantization import check_quantization
from tuneforge.threads import set_training_threads
from tuneforge.train.dist import is_main_process
from tuneforge.train.eval_only import run_eval_only
from tuneforge.train.launch import accelerator_count
from tuneforge.train.modes import check_modes, run_modes

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


def check_trainable(cfg: TuneforgeConfig) -> None:
    """Refuse configs that cannot train before anything heavy is loaded."""
    require(cfg.model.model_name_or_path, "model_name_or_path")
    require(cfg.training.output_dir, "output_dir", "the model, logs and metrics")


def run(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Train as the config says; returns the final metrics."""
    check_trainable(cfg)
    check_quantization(cfg)  # first: a GPU-only quantizer names the missing GPU, not a package it cannot use here
    check_extras(cfg, "train")
    _show_info_logs()
    modes = run_modes(cfg)
    check_modes(cfg)
    if accelerator_count() == 0:
        set_training_threads()  # compute-bound steps: every core, shared among local ranks (tuneforge.threads)
    metrics: dict[str, Any] = {}
    if cfg.training.do_predict:
        from tuneforge.train.predict import check_predict, run_predict

        check_predict(cfg)  # before training, so a wrong setting does not cost a whole run
    if modes.train:
        module, function = stage(cfg.method.stage).recipe.split(":")
        metrics = getattr(importlib.import_module(module), function)(cfg)
    elif modes.evaluate:
        metrics = run_eval_only(cfg)
    if cfg.training.do_predict:
        metrics.update(run_predict(cfg))
    if is_main_process():
        finished = "Training" if modes.train else "Evaluation" if modes.evaluate else "Prediction"
        print(outputs_summary(Path(cfg.training.output_dir), finished=finished))
    return metrics


# What a finished run leaves in output_dir, in the order a user looks for it.
OUTPUTS = [
    ("adapter", "adapter_model.safetensors"),
    ("model", "model.safetensors"),
    ("model", "model.safetensors.index.json"),
    ("value head", "value_head.safetensors"),
    ("log", "trainer_log.jsonl"),
    ("loss plot", "training_loss.png"),
    ("eval loss plot", "training_eval_loss.png"),
    ("metrics", "all_results.json"),
    ("eval metrics", "eval_results.json"),
    ("config", "tuneforge_config.yaml"),
    ("predictions", "generated_predictions.jsonl"),
    ("predict scores", "predict_results.json"),
]


def outputs_summary(out: Path, finished: str = "Training") -> str:
    """Lines naming where the adapter or model, the log, the plots and the metrics of a run were written."""
    lines = [f"{finished} finished. Outputs in {out}:"]
    lines += [f"  {what:<15}{out / name}" for what, name in OUTPUTS if (out / name).exists()]
    return "\n".join(lines)


def _show_info_logs() -> None:
    package = logging.getLogger("tuneforge")
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[tuneforge] %(levelname)s %(message)s"))
        package.addHandler(handler)
