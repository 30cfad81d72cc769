"""Build Hugging Face `Seq2SeqTrainingArguments` from the typed config.

LLaMA-Factory names map 1:1 where the installed transformers has the field; keys transformers dropped are
translated (`warmup_ratio` becomes a fractional `warmup_steps`, `logging_dir` the TensorBoard directory);
tuneforge's own keys are read by tuneforge; any other key stops with an error instead of being dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from functools import cache
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError
from tuneforge.train.dist import ddp_defaults

if TYPE_CHECKING:
    from transformers import Seq2SeqTrainingArguments

    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

# Handled by tuneforge itself rather than by the Trainer (the loader enables gradient checkpointing on the model).
_OWN_KEYS = {"gradient_checkpointing", "gradient_checkpointing_kwargs", "resume_from_checkpoint"}
# Training-section keys tuneforge reads itself (recipes, callbacks, batching); never Trainer arguments.
TUNEFORGE_KEYS = {
    "compute_accuracy",
    "disable_shuffling",
    "early_stopping_steps",
    "plot_loss",
    "include_effective_tokens_per_second",
    "max_tokens_per_batch",
    "fuse_micro_batches",
    "speed_kernels",
    "overwrite_output_dir",
    "fp8",
    "fp8_backend",
    "fp8_enable_fsdp_float8_all_gather",
    "master_addr",  # read by the torchrun launcher (train/launch.py)
    "master_port",
}
# Keys transformers 5 removed, translated by `_translate_removed` below.
TRANSLATED_KEYS = {"warmup_ratio", "logging_dir"}
# Just under 1, so transformers' ceil(total * fraction) is every step (a whole 1 would mean one step).
_ALL_STEPS = 1 - 1e-9


@cache
def _hf_fields() -> dict[str, Any]:
    from transformers import Seq2SeqTrainingArguments

    return {f.name: f for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init}


def precision_notes(cfg: TuneforgeConfig, cuda: bool) -> dict[str, Any]:
    """Precision flags for the Trainer, and notes where a request cannot be honoured on this machine."""
    t = cfg.training
    flags = {"bf16": t.bf16 and not cfg.method.pure_bf16, "fp16": t.fp16}
    notes = []
    if not cuda and (flags["bf16"] or flags["fp16"]):
        asked = "bf16" if flags["bf16"] else "fp16"
        notes.append(
            f"`{asked}: true` asks for mixed precision on a GPU; this machine has no CUDA device, so training "
            "runs in float32 on the CPU (same results, no half-precision speed-up)."
        )
        flags = {"bf16": False, "fp16": False}
    if cfg.method.pure_bf16:
        notes.append("`pure_bf16: true`: weights, gradients and optimizer states are bfloat16 (no fp32 master).")
    return {"flags": flags, "notes": notes}


def build_training_args(cfg: TuneforgeConfig, *, cuda: bool) -> tuple[Seq2SeqTrainingArguments, list[str]]:
    """The Trainer arguments for this config, and user-facing notes about adjustments made."""
    from transformers import Seq2SeqTrainingArguments

    fields = _hf_fields()
    values: dict[str, Any] = {}
    for key, value in cfg.training.model_dump().items():
        if key in _OWN_KEYS or not _is_trainer_key(key, fields):
            continue
        if value is None and _default(fields[key]) is not None:
            continue
        values[key] = value
    values.update(cfg.training_args_extra)
    notes = _translate_removed(cfg, values, fields)
    precision = precision_notes(cfg, cuda)
    values.update(precision["flags"])
    if values.get("include_num_input_tokens_seen") in (None, False, "no"):
        values["include_num_input_tokens_seen"] = "non_padding"  # tokens/s in the log
    if cfg.swanlab.use_swanlab:  # the SwanLab callback logs already; transformers' own would log twice
        values["report_to"] = _without_swanlab(values.get("report_to"))
    if cfg.training.disable_shuffling:
        values["train_sampling_strategy"] = "sequential"
    if not cuda:
        values["use_cpu"] = True
    ddp_defaults(cfg, values, cuda)
    return Seq2SeqTrainingArguments(**values), notes + precision["notes"]


def _without_swanlab(report_to: Any) -> Any:
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n.strip() for part in names for n in str(part).split(",") if n.strip()]
    kept = [n for n in names if n != "swanlab"]
    return kept or "none"


def _is_trainer_key(key: str, fields: dict[str, Any]) -> bool:
    """Whether a training-section key goes to the Trainer; a key nobody reads is an error, never dropped."""
    from tuneforge.config.wiring import wiring

    if key in fields:
        return key not in TUNEFORGE_KEYS
    kind = wiring(key)
    if key in TUNEFORGE_KEYS | TRANSLATED_KEYS or (kind is not None and kind.kind != "acts"):
        return False  # read by tuneforge, translated below, or refused / warned about when the config loaded
    import transformers

    raise TuneforgeError(
        f"`{key}` is not a training argument of the installed transformers {transformers.__version__} and "
        "tuneforge has no translation for it, so it would be silently dropped. Install the transformers "
        "version from tuneforge's requirements or report this key."
    )


def _translate_removed(cfg: TuneforgeConfig, values: dict[str, Any], fields: dict[str, Any]) -> list[str]:
    """Apply `warmup_ratio` and `logging_dir` where the installed transformers no longer has those fields."""
    t, notes = cfg.training, []
    if t.warmup_ratio and "warmup_ratio" not in fields:
        if t.warmup_steps:
            notes.append(f"`warmup_steps: {t.warmup_steps}` takes precedence over `warmup_ratio: {t.warmup_ratio}`.")
        else:
            values["warmup_steps"] = min(t.warmup_ratio, _ALL_STEPS)  # fractional warmup_steps: a share of steps
    if t.logging_dir and "logging_dir" not in fields:
        os.environ["TENSORBOARD_LOGGING_DIR"] = t.logging_dir  # where transformers 5's TensorBoard logger writes
    elif t.logging_dir:
        values["logging_dir"] = t.logging_dir
    if t.warmup_ratio and "warmup_ratio" in fields:
        values["warmup_ratio"] = t.warmup_ratio
    return notes


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None
