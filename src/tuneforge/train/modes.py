"""Run modes as LLaMA-Factory has them (`do_train` / `do_eval` / `do_predict`), and the extras every recipe adds.

`run_eval_only` evaluates a model (or a model plus adapters) without training: it writes `eval_results.json`
and `all_results.json` to `output_dir` and no weights. `trainer_callbacks` adds early stopping;
`effective_tokens_per_sec` is LLaMA-Factory's throughput over the dataset's real tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError
from tuneforge.train.dist import world_size
from tuneforge.train.launch import check_fsdp_world
from tuneforge.train.optimizers import check_optimizers

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

EVAL_STAGES = ("pt", "sft")


@dataclass(frozen=True)
class RunModes:
    """What one `tuneforge train` run does, in order: train, evaluate, predict."""

    train: bool
    evaluate: bool
    predict: bool


def run_modes(cfg: TuneforgeConfig) -> RunModes:
    """The modes a config asks for; a config naming none of them trains (see README, Differences)."""
    t = cfg.training
    train = t.do_train or not (t.do_eval or t.do_predict)
    return RunModes(train=train, evaluate=t.do_eval and not train, predict=t.do_predict)


def trainer_callbacks(cfg: TuneforgeConfig) -> list[Any]:
    """Callbacks a config asks for beyond tuneforge's own: early stopping after `early_stopping_steps` evals,
    SwanLab logging (`use_swanlab`), the profilers (`enable_torch_profiler`, `profile_modules`)."""
    from tuneforge.train.profiling import profiler_callbacks
    from tuneforge.train.swanlab_log import swanlab_callbacks

    tracking = [*swanlab_callbacks(cfg), *profiler_callbacks(cfg)]
    if cfg.training.early_stopping_steps is None:
        return tracking
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=cfg.training.early_stopping_steps), *tracking]


def effective_tokens_per_sec(cfg: TuneforgeConfig, dataset: Any, metrics: dict[str, Any]) -> None:
    """With `include_effective_tokens_per_second`, add LLaMA-Factory's `effective_tokens_per_sec` to `metrics`:
    the dataset's tokens (chosen + rejected for pairs) times the epochs, over the training time."""
    if not cfg.training.include_effective_tokens_per_second or not metrics.get("train_runtime"):
        return
    if not hasattr(dataset, "__len__"):
        logger.warning("`include_effective_tokens_per_second`: a streamed dataset has no token count; not reported.")
        return
    pairs = "chosen_input_ids" in dataset.column_names
    columns = ["chosen_input_ids", "rejected_input_ids"] if pairs else ["input_ids"]
    tokens = sum(len(ids) for column in columns for ids in dataset[column])
    metrics["effective_tokens_per_sec"] = tokens * metrics.get("epoch", 1.0) / metrics["train_runtime"]


def check_modes(cfg: TuneforgeConfig) -> None:
    """Refuse a run that cannot work (eval-only stage, device map, fsdp launch) before anything is loaded."""
    modes = run_modes(cfg)
    if modes.evaluate and cfg.method.stage not in EVAL_STAGES:
        raise ConfigError(
            f"`do_eval` without `do_train` evaluates stage pt or sft only, not `stage: {cfg.method.stage}`; "
            "set `do_train: true` (evaluation then runs after training) or `stage: sft`."
        )
    if modes.train and cfg.quantization.quantization_device_map == "auto":
        raise ConfigError(
            "`quantization_device_map: auto` spreads a quantized model over devices for inference only; "
            "remove it to train (QLoRA trains on one device)."
        )
    world = world_size()  # the processes this run really has
    check_fsdp_world(cfg, world)
    if modes.train and cfg.model.shift_attn:
        from tuneforge.models.shift_attn import preflight_shift_attn

        preflight_shift_attn(cfg)
    if modes.train:
        check_optimizers(cfg, world)
    if modes.train and cfg.model.use_unsloth_gc:
        from tuneforge.models.loader import offload_supported

        if not offload_supported():
            raise ConfigError(
                "`use_unsloth_gc` needs a transformers with offloaded activation checkpointing "
                "(`activation_checkpointing_enable(offload=...)`); upgrade transformers or remove the key."
            )
    if modes.evaluate and not (cfg.data.eval_dataset or cfg.data.val_size):
        raise ConfigError(
            "`do_eval: true` without training needs evaluation data: set `eval_dataset` (or `dataset` with `val_size`)."
        )
